"""The GW / FGW outer loop: parity with POT's entropic (fused) GW, the objective, batches, unbalanced fixed points."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import otalign
from otalign import ConvergenceWarning, GWProblem, PointCloud
from otalign.gromov import solve_gw

from gw_reference import brute_energy, clouds, sqdist

ot = pytest.importorskip("ot")
POT_LOSS = {"square": "square_loss", "kl": "kl_loss"}


def _pot_gw(Cx, Cy, a, b, loss, eps, iters, tol=0.0, **kw):
    return ot.gromov.entropic_gromov_wasserstein(
        Cx.numpy(), Cy.numpy(), a.numpy(), b.numpy(), POT_LOSS[loss], epsilon=eps, max_iter=iters, tol=tol, log=True,
        numItermax=5000, stopThr=1e-12, **kw,
    )


@pytest.mark.slow  # several seconds on a loaded 2-core machine
@pytest.mark.parametrize("loss", ["square", "kl"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_gw_matches_pot(loss, symmetric):
    x, y, a, b = clouds(12, 9, seed=0)
    Cx, Cy = sqdist(x), sqdist(y)
    if loss == "kl":
        Cx, Cy = Cx + 0.2, Cy + 0.1  # positive, so that log C_y is not the floor
    if not symmetric:
        gen = torch.Generator().manual_seed(5)
        Cx = Cx + 0.2 * torch.rand(Cx.shape, generator=gen, dtype=Cx.dtype)
        Cy = Cy + 0.2 * torch.rand(Cy.shape, generator=gen, dtype=Cy.dtype)
    T, log = _pot_gw(Cx, Cy, a, b, loss, eps=0.01, iters=15)
    problem = GWProblem(Cx, Cy, a, b, eps=0.01, loss=loss)
    assert problem.symmetric is symmetric
    plan = otalign.solve(problem, max_iter=15, tol=0, inner_tol=1e-12, inner_max_iter=5000)
    assert plan.iterations == 15
    np.testing.assert_allclose(plan.matrix.numpy(), T, atol=1e-5 * T.max(), rtol=0)
    np.testing.assert_allclose(plan.matrix.numpy(), T, atol=1e-9)
    assert abs(float(plan.value) - float(log["gw_dist"])) <= 1e-5 * abs(float(log["gw_dist"]))
    # the value is the energy without the entropic term, the literal four-index sum
    brute = brute_energy(Cx, Cy, plan.matrix, loss)
    assert abs(float(plan.value) - float(brute)) <= 1e-9 * abs(float(brute))


def test_kl_loss_with_zero_costs_uses_pots_floor():
    """Distance matrices have zero diagonals: POT floors log C_y at log 1e-18; so do we."""
    x, y, a, b = clouds(10, 8, seed=3)
    Cx, Cy = sqdist(x), sqdist(y)
    T, log = _pot_gw(Cx, Cy, a, b, "kl", eps=0.05, iters=5)
    plan = solve_gw(GWProblem(Cx, Cy, a, b, eps=0.05, loss="kl"), max_iter=5, tol=0, inner_tol=1e-12, inner_max_iter=5000)
    np.testing.assert_allclose(plan.matrix.numpy(), T, atol=1e-9)
    assert abs(float(plan.value) - float(log["gw_dist"])) <= 1e-6 * abs(float(log["gw_dist"]))


@pytest.mark.slow  # several seconds on a loaded 2-core machine
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.8])
def test_fused_gw_matches_pot(alpha):
    x, y, a, b = clouds(11, 10, seed=1)
    Cx, Cy = sqdist(x), sqdist(y)
    M = torch.cdist(x[:, :2], y) ** 2
    T, log = ot.gromov.entropic_fused_gromov_wasserstein(
        M.numpy(), Cx.numpy(), Cy.numpy(), a.numpy(), b.numpy(), epsilon=0.02, alpha=alpha, max_iter=12, tol=0,
        log=True, numItermax=5000, stopThr=1e-12,
    )
    plan = otalign.solve(GWProblem(Cx, Cy, a, b, eps=0.02, alpha=alpha, cost_xy=M), max_iter=12, tol=0,
                         inner_tol=1e-12, inner_max_iter=5000)
    np.testing.assert_allclose(plan.matrix.numpy(), T, atol=1e-9)
    assert abs(float(plan.value) - float(log["fgw_dist"])) <= 1e-6 * abs(float(log["fgw_dist"]))
    linear, energy = (M * plan.matrix).sum(), brute_energy(Cx, Cy, plan.matrix, "square")
    assert torch.allclose(plan.value, (1 - alpha) * linear + alpha * energy, rtol=1e-10)


@pytest.mark.slow  # several seconds on a loaded 2-core machine
@pytest.mark.parametrize("materialize", [True, False])
def test_point_clouds_match_dense_and_pot(materialize):
    """Factorised squared distances (no n x n matrix) give POT's plan on the dense matrices."""
    x, y, a, b = clouds(14, 11, seed=2)
    T, log = _pot_gw(sqdist(x), sqdist(y), a, b, "square", eps=0.01, iters=10)
    problem = GWProblem(PointCloud(x, x), PointCloud(y, y), a, b, eps=0.01)
    plan = solve_gw(problem, max_iter=10, tol=0, inner_tol=1e-12, inner_max_iter=5000, materialize=materialize)
    np.testing.assert_allclose(plan.matrix.numpy(), T, atol=1e-9)
    assert abs(float(plan.value) - float(log["gw_dist"])) <= 1e-6 * abs(float(log["gw_dist"]))
    # fused with a factorised cross cost, against the dense formulation
    z = torch.randn(14, 2, dtype=x.dtype, generator=torch.Generator().manual_seed(0)) / 3
    fused = GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.02, alpha=0.4, cost_xy=PointCloud(z, y))
    dense = GWProblem(sqdist(x), sqdist(y), a, b, eps=0.02, alpha=0.4, cost_xy=torch.cdist(z, y) ** 2)
    p1 = solve_gw(fused, max_iter=6, tol=0, materialize=materialize)
    p2 = solve_gw(dense, max_iter=6, tol=0)
    assert torch.allclose(p1.matrix, p2.matrix, atol=1e-10)
    assert torch.allclose(p1.value, p2.value, rtol=1e-9)


@pytest.mark.slow  # several seconds on a loaded 2-core machine
def test_stopping_rule_and_iteration_count_match_pot():
    """Frobenius plan change, tested every 10 steps from the first (POT's rule): same number of outer steps."""
    x, y, a, b = clouds(10, 10, seed=4)
    T, log = _pot_gw(sqdist(x), sqdist(y), a, b, "square", eps=0.02, iters=500, tol=1e-7)
    plan = solve_gw(GWProblem(sqdist(x), sqdist(y), a, b, eps=0.02), max_iter=500, tol=1e-7, check_every=10,
                    inner_tol=1e-12, inner_max_iter=5000, schedule="fixed")
    assert plan.converged
    assert plan.iterations == 10 * (len(log["err"]) - 1) + 1
    assert abs(float(plan.error) - float(log["err"][-1])) <= 1e-6 * float(log["err"][-1]) + 1e-12
    np.testing.assert_allclose(plan.matrix.numpy(), T, atol=1e-9)


@pytest.mark.slow  # several seconds on a loaded 2-core machine
def test_batched_equals_looped():
    x, y, a, b = clouds(9, 7, seed=6, batch=3)
    for geom_x, geom_y in ((sqdist(x), sqdist(y)), (PointCloud(x), PointCloud(y))):
        batched = solve_gw(GWProblem(geom_x, geom_y, a, b, eps=0.02), max_iter=8, tol=0)
        assert batched.matrix.shape == (3, 9, 7) and batched.value.shape == (3,)
        for k in range(3):
            single = solve_gw(GWProblem(sqdist(x[k]), sqdist(y[k]), a[k], b[k], eps=0.02), max_iter=8, tol=0)
            assert torch.allclose(batched.matrix[k], single.matrix, atol=1e-12)
            assert torch.allclose(batched.value[k], single.value, rtol=1e-10)
            assert torch.allclose(batched.value_entropic[k], single.value_entropic, rtol=1e-10)


def _stationarity_residual(problem, plan):
    """``grad F(P) + eps log(P / a b^T) + rho_a log(P1 / a) + rho_b log(P^T 1 / b)``, with ``grad F`` by autograd of
    the brute-force energy: zero at a fixed point of an unbalanced problem, of the form ``phi_i + psi_j`` when
    balanced (the multipliers of the constraints)."""
    P = plan.matrix.detach().clone().requires_grad_(True)
    energy = brute_energy(problem.geom_x.matrix(), problem.geom_y.matrix(), P, problem.loss)
    (grad,) = torch.autograd.grad(energy, P)
    a, b, eps = problem.a, problem.b, problem.eps
    residual = grad + eps * (P.detach() / torch.outer(a, b)).log()
    rows, cols = P.detach().sum(1), P.detach().sum(0)
    if math.isfinite(problem.rho_a):
        residual = residual + problem.rho_a * (rows / a).log()[:, None]
    if math.isfinite(problem.rho_b):
        residual = residual + problem.rho_b * (cols / b).log()[None, :]
    return residual


@pytest.mark.slow  # several seconds on a loaded 2-core machine
@pytest.mark.parametrize("rho", [(0.5, 0.5), (0.2, math.inf), (math.inf, math.inf)])
def test_fixed_point_is_stationary(rho):
    x, y, a, b = clouds(8, 7, seed=7)
    problem = GWProblem(PointCloud(x), PointCloud(y), a * 1.3, b * 1.3, eps=0.05, rho_a=rho[0], rho_b=rho[1])
    step = 1.0 if problem.is_balanced else 0.5  # full steps make this problem's mass oscillate
    plan = solve_gw(problem, max_iter=2000, tol=1e-13, inner_tol=1e-13, inner_max_iter=20000, step=step)
    assert plan.converged
    residual = _stationarity_residual(problem, plan)
    if problem.is_balanced:  # remove the multipliers phi_i + psi_j
        residual = residual - residual.mean(1, keepdim=True) - residual.mean(0, keepdim=True) + residual.mean()
    elif math.isinf(problem.rho_b):
        residual = residual - residual.mean(0, keepdim=True)
    assert residual.abs().max() < 1e-8
    if not problem.is_balanced:  # the relaxed marginal moved away from its mass
        assert float(plan.marginal_error[0]) > 1e-4


@pytest.mark.slow  # several seconds on a loaded 2-core machine
def test_damped_steps_reach_the_same_fixed_point():
    x, y, a, b = clouds(8, 7, seed=7)
    problem = GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.05, rho_a=2.0, rho_b=2.0)
    full = solve_gw(problem, max_iter=500, tol=1e-8, inner_tol=1e-10, inner_max_iter=5000, step=1.0)
    damped = solve_gw(problem, max_iter=500, tol=1e-8, inner_tol=1e-10, inner_max_iter=5000, step=0.5)
    assert full.converged and damped.converged and damped.iterations > full.iterations
    assert torch.allclose(full.matrix, damped.matrix, atol=1e-7)
    assert damped.inner.problem.eps == pytest.approx(0.1)  # eps / step


@pytest.mark.parametrize("step", [1.0, 0.4])
def test_value_entropic_is_the_objective(step):
    x, y, a, b = clouds(8, 6, seed=8)
    problem = GWProblem(sqdist(x), sqdist(y), a, b, eps=0.05, rho_a=0.7, rho_b=2.0)
    plan = solve_gw(problem, max_iter=20, tol=0, step=step)
    P = plan.matrix

    def kl(p, q):
        return (p * (p / q).log()).sum() - p.sum() + q.sum()
    expected = (brute_energy(sqdist(x), sqdist(y), P, "square") + 0.05 * kl(P, torch.outer(a, b))
                + 0.7 * kl(P.sum(1), a) + 2.0 * kl(P.sum(0), b))
    assert torch.allclose(plan.value_entropic, expected, rtol=1e-10)
    assert torch.allclose(plan.value, brute_energy(sqdist(x), sqdist(y), P, "square"), rtol=1e-10)


@pytest.mark.slow  # several seconds on a loaded 2-core machine
def test_warm_start_and_dispatch():
    x, y, a, b = clouds(10, 8, seed=9)
    problem = GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.03)
    first = otalign.solve(problem, max_iter=300, tol=1e-10)
    direct = solve_gw(problem, max_iter=300, tol=1e-10)
    assert torch.equal(first.matrix, direct.matrix) and first.iterations == direct.iterations
    again = otalign.solve(problem, max_iter=300, tol=1e-10, init=first)
    assert again.converged and again.iterations == 1
    assert torch.allclose(again.matrix, first.matrix, atol=1e-10)
    from_matrix = solve_gw(problem, max_iter=300, tol=1e-10, init=first.matrix)
    assert torch.allclose(from_matrix.matrix, first.matrix, atol=1e-9)


def test_convergence_warnings():
    x, y, a, b = clouds(10, 8, seed=10)
    problem = GWProblem(sqdist(x), sqdist(y), a, b, eps=0.01)
    with pytest.warns(ConvergenceWarning, match="outer steps"):
        plan = solve_gw(problem, max_iter=2, tol=1e-12)
    assert not plan.converged and plan.error is not None
    with pytest.warns(ConvergenceWarning, match="inner_max_iter"):
        solve_gw(problem, max_iter=2, tol=0, inner_max_iter=2, inner_tol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_gw(problem, max_iter=3, tol=0, inner_max_iter=3, inner_tol=0)  # fixed counts: nothing to warn about


def test_float32_and_other_solvers():
    x, y, a, b = clouds(10, 8, seed=11)
    reference = solve_gw(GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.05), max_iter=10, tol=0)
    single = solve_gw(GWProblem(PointCloud(x.float()), PointCloud(y.float()), a.float(), b.float(), eps=0.05),
                      max_iter=10, tol=0)
    assert single.matrix.dtype == torch.float32
    assert (single.matrix.double() - reference.matrix).abs().sum() < 1e-5
    translated = solve_gw(GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.05, rho_a=1.0, rho_b=1.0),
                          "unbalanced", max_iter=10, tol=0)
    scaled = solve_gw(GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.05, rho_a=1.0, rho_b=1.0),
                      "sinkhorn", max_iter=10, tol=0)
    assert torch.allclose(translated.matrix, scaled.matrix, atol=1e-9)
