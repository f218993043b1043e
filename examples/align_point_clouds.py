"""OT outside self-supervised learning: align two point clouds and two embedding sets with otalign.

1. Registration by gradient flow: move a point cloud ``x`` towards ``y`` by descending the entropic OT cost
   (``grad="envelope"``: the gradient of the optimal value, no unrolling), then read the matching from the plan.
2. Matching two embedding sets that differ by an unknown rotation (e.g. two encoders, or one encoder on two
   domains): solve OT on the cosine cost, take the plan's barycentric map, fit the orthogonal map
   (Procrustes) and report how many points are matched to their true partner.
3. The same problem through POT, to show the plans agree.

Run: ``python examples/align_point_clouds.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import math

import torch

import otalign


def gradient_flow(steps: int = 60, lr: float = 1.0) -> None:
    gen = torch.Generator().manual_seed(0)
    angle = torch.rand(300, generator=gen) * 2 * math.pi
    y = torch.stack([angle.cos(), angle.sin()], 1) + 0.05 * torch.randn(300, 2, generator=gen)   # a ring
    x = (0.3 * torch.randn(250, 2, generator=gen) + torch.tensor([2.0, 0.0])).requires_grad_()  # a blob
    for step in range(steps + 1):
        problem = otalign.Problem(otalign.PointCloud(x, y, cost="half_sqeuclidean"), eps=0.01)
        plan = otalign.solve(problem, grad="envelope", eps_scaling=0.5, tol=1e-4)
        if step % 20 == 0:
            print(f"  step {step:3d}: OT cost {plan.value.item():.4f}")
        (grad,) = torch.autograd.grad(plan.value, x)
        with torch.no_grad():
            x -= lr * grad * x.shape[0]  # the gradient of OT w.r.t. a point of mass 1/n is (x_i - T(x_i)) / n
    print(f"  mean distance of x to the ring: {(x.detach().norm(dim=1) - 1).abs().mean():.3f}")


def match_rotated_embeddings(n: int = 400, dim: int = 16) -> None:
    gen = torch.Generator().manual_seed(1)
    source = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)
    skew = torch.randn(dim, dim, generator=gen)
    skew = (skew - skew.T) / torch.linalg.norm(skew - skew.T)
    rotation = torch.linalg.matrix_exp(2.0 * skew)                        # an unknown rotation
    order = torch.randperm(n, generator=gen)
    target = torch.nn.functional.normalize(source @ rotation + 0.1 * torch.randn(n, dim, generator=gen), dim=1)
    target = target[order]                                                # partners are shuffled
    truth = torch.argsort(order)                                          # source i <-> target truth[i]
    estimate = torch.eye(dim)
    for round_ in range(4):
        similarity = (source @ estimate) @ target.T
        nearest = (similarity.argmax(1) == truth).float().mean().item()
        plan = otalign.solve(otalign.Problem(-similarity, eps=0.02), eps_scaling=0.5, tol=1e-4, max_iter=5000)
        matched = (plan.matrix.argmax(1) == truth).float().mean().item()
        print(f"  round {round_}: true partner found by OT {matched:.1%}, by nearest neighbour {nearest:.1%}")
        barycentres = plan.apply(target) * n                              # T(x_i) = sum_j P_ij y_j / a_i
        u, _, v = torch.linalg.svd(source.T @ barycentres)
        estimate = u @ v                                                  # Procrustes on the OT matching
    print(f"  rotation error |R_est - R|_F = {torch.linalg.norm(estimate - rotation):.3f} "
          f"(|I - R|_F = {torch.linalg.norm(torch.eye(dim) - rotation):.3f})")


def compare_with_pot() -> None:
    try:
        import ot
    except ImportError:
        print("  (POT not installed: pip install 'otalign[pot]')")
        return
    gen = torch.Generator().manual_seed(2)
    cost = torch.cdist(torch.randn(200, 5, generator=gen), torch.randn(150, 5, generator=gen)) ** 2
    cost = cost / cost.max()
    ours = otalign.solve(otalign.Problem(cost.double(), eps=0.01), tol=1e-9, max_iter=10_000)
    pots = ot.sinkhorn(ours.problem.a, ours.problem.b, cost.double(), 0.01, method="sinkhorn_log",
                       stopThr=1e-9, numItermax=10_000)
    print(f"  max |P_otalign - P_POT| = {(ours.matrix - pots).abs().max():.2e} after {ours.iterations} iterations")


if __name__ == "__main__":
    print("1. gradient flow of a blob onto a ring")
    gradient_flow()
    print("2. matching two embedding sets related by an unknown rotation")
    match_rotated_embeddings()
    print("3. the same plan as POT")
    compare_with_pot()
