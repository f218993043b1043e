"""Match two views of the same samples that share no feature space, with Gromov-Wasserstein.

scikit-learn's 8x8 digits (offline) seen through two feature maps of the same images:

* ``pca``: the first ``dim`` principal components of the pixels (standardised);
* ``rotated``: the same components, randomly rotated, plus Gaussian noise (an encoder that learnt the same
  geometry in another basis);
* ``nonlinear``: ``tanh`` of a random projection of the pixels to ``2 dim`` features (another encoder altogether).

Sample ``k`` of one view is sample ``k`` of the other, but no cost between the two views makes sense (different
bases, different dimensions). GW compares the intra-view distance matrices only. Reported: the fraction of rows
whose plan argmax is the true partner, for the GW plan, for a plain entropic W plan on the raw features (only
where the dimensions agree: it assumes the two bases are the same), and for a random plan (``1 / N``).

The views are scaled to unit mean norm, so intra squared distances are O(1) and the linearised GW cost O(10):
eps = 0.3 is small against it. GW is not convex: the plan found from ``a b^T`` is a stationary point, and how
good a matching it gives is what is measured here.

Run: ``python examples/gromov_matching.py`` (a few minutes on 2 CPU cores; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import warnings

import torch

import otalign
from otalign import PointCloud


def digit_views(n: int, dim: int, noise: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` digits through the three feature maps above, each ``(n, d)`` float64, scaled to unit mean norm."""
    from sklearn.datasets import load_digits

    gen = torch.Generator().manual_seed(seed)
    pixels = torch.tensor(load_digits().data, dtype=torch.float64)
    pixels = pixels[torch.randperm(len(pixels), generator=gen)[:n]]
    centred = (pixels - pixels.mean(0)) / (pixels.std(0) + 1e-8)
    _, _, basis = torch.linalg.svd(centred, full_matrices=False)
    pca = centred @ basis[:dim].T
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    rotated = pca @ rotation + noise * pca.norm(dim=1).mean() / dim ** 0.5 * torch.randn(n, dim, generator=gen,
                                                                                         dtype=torch.float64)
    projection = torch.randn(pixels.shape[1], 2 * dim, generator=gen, dtype=torch.float64) / pixels.shape[1] ** 0.5
    nonlinear = torch.tanh(centred @ projection)
    views = {"pca": pca, "rotated": rotated, "nonlinear": nonlinear}
    return {name: v / v.norm(dim=1).mean() for name, v in views.items()}


def accuracy(plan_matrix: torch.Tensor) -> float:
    """Fraction of rows whose largest entry is on the diagonal (the known partner)."""
    return float((plan_matrix.argmax(1) == torch.arange(plan_matrix.shape[0])).double().mean())


def gw_accuracy(x: torch.Tensor, y: torch.Tensor, eps: float, iterations: int) -> float:
    """Accuracy of the entropic GW plan between the squared-distance geometries of ``x (N, d_x)`` and ``y (N, d_y)``."""
    problem = otalign.GWProblem(PointCloud(x, x), PointCloud(y, y), eps=eps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", otalign.ConvergenceWarning)
        plan = otalign.solve(problem, max_iter=iterations, tol=1e-7, grad="detach", inner_tol=1e-6)
    return accuracy(plan.matrix)


def w_accuracy(x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Accuracy of the entropic OT plan on ``|x_i - y_j|^2`` (needs ``d_x = d_y``)."""
    with warnings.catch_warnings():  # only the argmax of each row is read
        warnings.simplefilter("ignore", otalign.ConvergenceWarning)
        plan = otalign.solve(otalign.Problem(PointCloud(x, y), eps=eps), grad="detach", eps_scaling=0.5, tol=1e-4,
                             max_iter=300)
    return accuracy(plan.matrix)


def run(n: int, dim: int, noise: float, eps: float, iterations: int, seed: int = 0) -> list[dict]:
    """One row per pair of views: GW, W (where dimensions agree) and random-plan accuracies."""
    views = digit_views(n, dim, noise, seed)
    rows = []
    for first, second in (("pca", "rotated"), ("pca", "nonlinear")):
        x, y = views[first], views[second]
        row = {"views": f"{first} -> {second}", "n": n, "gw": gw_accuracy(x, y, eps, iterations), "random": 1.0 / n}
        row["w"] = w_accuracy(x, y, 0.01) if x.shape[1] == y.shape[1] else None
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 60 if args.quick else args.n
    for row in run(n, args.dim, args.noise, args.eps, args.iterations):
        w = "n/a (dimensions differ)" if row["w"] is None else f"{row['w']:.3f}"
        print(f"{row['views']:20s} N={row['n']}: GW {row['gw']:.3f}   W on raw features {w}   random {row['random']:.4f}")


if __name__ == "__main__":
    main()
