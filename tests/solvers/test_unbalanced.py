"""Unbalanced and semi-relaxed problems: the "sinkhorn" and the translation-invariant "unbalanced" solvers against
POT's ``ot.unbalanced.sinkhorn_unbalanced`` (both reference measures), the iteration savings of "unbalanced", and
the closed-form translation step.

POT's ``reg_type="kl"`` kernel already carries the reference ``a b^T`` (``reg_type="entropy"``: ``1``), so in both
cases POT's ``eps log u`` *is* otalign's ``f`` (no ``eps log a`` correction, unlike the balanced ``ot.sinkhorn``).
Tolerances: plans 1e-12 absolute (entries are O(1e-2)), potentials 1e-11, float64 throughout.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from otalign import PointCloud, Problem, solve
from otalign.problem import dual_mass_term
from otalign.solvers.unbalanced import optimal_translation

ot = pytest.importorskip("ot")

RHOS = [(1.0, 1.0), (0.5, 2.0), (math.inf, 0.3), (0.3, math.inf)]
POT_REG_TYPE = {"product": "kl", "uniform": "entropy"}


def pot_unbalanced(data, eps, rho, reference):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns that reg_type="entropy" overwrites its reference
        P, log = ot.unbalanced.sinkhorn_unbalanced(
            data.a, data.b, data.C, eps, rho, reg_type=POT_REG_TYPE[reference], numItermax=100_000, stopThr=1e-15,
            log=True,
        )
    return P, eps * log["logu"], eps * log["logv"]


@pytest.mark.parametrize("solver", ["sinkhorn", "unbalanced"])
@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("rho", RHOS)
def test_matches_pot_sinkhorn_unbalanced(data, solver, reference, rho, primal):
    eps = 0.1
    P_pot, f_pot, g_pot = pot_unbalanced(data, eps, rho, reference)
    problem = Problem(data.C, data.a, data.b, eps=eps, rho_a=rho[0], rho_b=rho[1], reference=reference)
    plan = solve(problem, solver, tol=1e-14, max_iter=100_000)
    assert plan.converged
    torch.testing.assert_close(plan.matrix, P_pot, rtol=0, atol=1e-12)
    # unbalanced potentials are unique (no gauge) when both sides are relaxed; one hard side leaves none either
    torch.testing.assert_close(plan.f, f_pot, rtol=0, atol=1e-11)
    torch.testing.assert_close(plan.g, g_pot, rtol=0, atol=1e-11)
    # otalign's objective equals the independent primal of POT's plan (POT's own total_cost is not used)
    expected = primal(P_pot, data.C, data.a, data.b, eps, rho[0], rho[1], reference)
    torch.testing.assert_close(plan.value, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_references_give_different_unbalanced_plans(data, reference):
    """A sanity check that the reference is honoured: with soft marginals the two references differ."""
    plans = {
        r: solve(Problem(data.C, data.a, data.b, eps=0.1, rho_a=1.0, rho_b=1.0, reference=r), "unbalanced", tol=1e-12)
        for r in ("product", "uniform")
    }
    assert (plans["product"].matrix - plans["uniform"].matrix).abs().max() > 1e-3


def test_translation_invariant_needs_far_fewer_iterations(make):
    """rho = 1, eps = 0.01 on point clouds (cost |x - y|^2 scaled to max 1, b carries twice the mass of a): plain
    scaling corrects the total mass at rate eps/(rho + eps); the translation step removes that slow mode."""
    d = make(20, 15, seed=5)
    problem = Problem(d.C, d.a, 2 * d.b, eps=0.01, rho_a=1.0, rho_b=1.0)
    plain = solve(problem, "sinkhorn", tol=1e-9, max_iter=20_000, acceleration=None)
    fast = solve(problem, "unbalanced", tol=1e-9, max_iter=20_000)
    assert plain.converged and fast.converged
    assert fast.iterations <= 0.5 * plain.iterations
    torch.testing.assert_close(fast.matrix, plain.matrix, rtol=0, atol=1e-8)


@pytest.mark.parametrize("rho", [(1.0, 1.0), (0.5, 2.0), (math.inf, 0.3)])
def test_translation_maximises_the_dual_along_the_gauge(data, rho):
    """``t*`` maximises ``t -> D(f + t, g - t)``; the plan (hence the entropic term) does not move, so only the
    two mass terms change. Checked against a brute-force scan."""
    problem = Problem(data.C, data.a, data.b, eps=0.1, rho_a=rho[0], rho_b=rho[1])
    gen = torch.Generator().manual_seed(0)
    f = 0.3 * torch.randn(data.C.shape[0], generator=gen, dtype=torch.float64)
    g = 0.3 * torch.randn(data.C.shape[1], generator=gen, dtype=torch.float64)

    def dual(t):
        return dual_mass_term(f + t, data.a, rho[0]) + dual_mass_term(g - t, data.b, rho[1])

    best = optimal_translation(problem, f, g)
    grid = best + torch.linspace(-0.5, 0.5, 1001, dtype=torch.float64)
    values = torch.stack([dual(t) for t in grid])
    assert dual(best) >= values.max() - 1e-14
    h = 1e-6
    assert abs((dual(best + h) - dual(best - h)).item() / (2 * h)) < 1e-8


def test_translation_is_a_noop_for_balanced_or_free_sides(data):
    f = torch.zeros(data.C.shape[0], dtype=torch.float64)
    g = torch.zeros(data.C.shape[1], dtype=torch.float64)
    assert optimal_translation(Problem(data.C, data.a, data.b), f, g) is None
    assert optimal_translation(Problem(data.C, data.a, data.b, rho_b=0.0), f, g) is None


@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_unbalanced_pointcloud_matches_dense(data, reference):
    cloud = Problem(PointCloud(data.x, data.y, "sqeuclidean"), data.a, data.b, eps=0.5, rho_a=0.7, rho_b=0.7,
                    reference=reference)
    dense = Problem(torch.cdist(data.x, data.y) ** 2, data.a, data.b, eps=0.5, rho_a=0.7, rho_b=0.7,
                    reference=reference)
    p_cloud = solve(cloud, "unbalanced", tol=1e-12)
    p_dense = solve(dense, "unbalanced", tol=1e-12)
    torch.testing.assert_close(p_cloud.matrix, p_dense.matrix, rtol=0, atol=1e-12)
    torch.testing.assert_close(p_cloud.value, p_dense.value, rtol=1e-11, atol=0)
