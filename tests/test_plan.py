"""``otalign.Plan``: the objective against an independent primal recomputation and the dual, marginals, linear
cost, ``apply``, and explicit (exact OT) plans."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import otalign
from otalign import Plan, PointCloud, Problem, solve

RELAXATIONS = [(math.inf, math.inf), (1.0, 1.0), (0.5, 2.0), (math.inf, 0.3), (math.inf, 0.0)]


@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("rho", RELAXATIONS)
def test_value_equals_independent_primal_and_dual(data, reference, rho, primal):
    eps = 0.1
    problem = Problem(data.C, data.a, data.b, eps=eps, rho_a=rho[0], rho_b=rho[1], reference=reference)
    plan = solve(problem, "unbalanced", tol=1e-13, max_iter=100_000)
    expected = primal(plan.matrix, data.C, data.a, data.b, eps, rho[0], rho[1], reference)
    torch.testing.assert_close(plan.value, expected, rtol=1e-12, atol=1e-14)
    # strong duality at convergence
    torch.testing.assert_close(plan.dual_value, plan.value, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_value_is_the_primal_of_any_iterate(data, reference, primal):
    """The value formula is exact for any potentials, not only at the optimum (here: after 3 iterations)."""
    rho = (0.7, 2.0)
    problem = Problem(data.C, data.a, data.b, eps=0.2, rho_a=rho[0], rho_b=rho[1], reference=reference)
    plan = solve(problem, tol=0, max_iter=3)
    expected = primal(plan.matrix, data.C, data.a, data.b, 0.2, rho[0], rho[1], reference)
    torch.testing.assert_close(plan.value, expected, rtol=1e-12, atol=1e-14)
    assert plan.dual_value < plan.value  # weak duality, strict away from the optimum


@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_pot_unbalanced_plan_has_the_same_primal_value(data, reference, primal):
    ot = pytest.importorskip("ot")
    eps, rho = 0.1, (1.0, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P_pot = ot.unbalanced.sinkhorn_unbalanced(
            data.a, data.b, data.C, eps, rho, reg_type={"product": "kl", "uniform": "entropy"}[reference],
            numItermax=100_000, stopThr=1e-15,
        )
    plan = solve(Problem(data.C, data.a, data.b, eps=eps, rho_a=rho[0], rho_b=rho[1], reference=reference),
                 "unbalanced", tol=1e-13)
    pot_value = primal(P_pot, data.C, data.a, data.b, eps, rho[0], rho[1], reference)
    torch.testing.assert_close(plan.value, pot_value, rtol=1e-11, atol=1e-14)


def test_marginals_mass_and_linear_value_match_the_matrix(data):
    plan = solve(Problem(data.C, data.a, data.b, eps=0.1, rho_a=0.5, rho_b=2.0), tol=0, max_iter=5)
    P = plan.matrix
    rows, cols = plan.marginals
    torch.testing.assert_close(rows, P.sum(1), rtol=1e-13, atol=0)
    torch.testing.assert_close(cols, P.sum(0), rtol=1e-13, atol=0)
    torch.testing.assert_close(plan.mass, P.sum(), rtol=1e-13, atol=0)
    torch.testing.assert_close(plan.value_linear, (P * data.C).sum(), rtol=1e-13, atol=0)
    err_rows, err_cols = plan.marginal_error
    torch.testing.assert_close(err_rows, (P.sum(1) - data.a).abs().sum(), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(err_cols, (P.sum(0) - data.b).abs().sum(), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(plan.log_matrix.exp(), P, rtol=0, atol=0)


@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_matrix_is_the_gibbs_form(data, reference):
    """``P_ij = R_ij exp((f_i + g_j - C_ij)/eps)`` for arbitrary potentials."""
    gen = torch.Generator().manual_seed(1)
    f = torch.randn(8, generator=gen, dtype=torch.float64)
    g = torch.randn(6, generator=gen, dtype=torch.float64)
    problem = Problem(data.C, data.a, data.b, eps=0.3, reference=reference)
    R = torch.outer(data.a, data.b) if reference == "product" else torch.ones_like(data.C)
    expected = R * torch.exp((f[:, None] + g[None, :] - data.C) / 0.3)
    torch.testing.assert_close(Plan(problem, f, g, 0, False).matrix, expected, rtol=1e-13, atol=0)


def test_apply_is_matrix_product(make):
    d = make(9, 7, seed=2)
    plan = solve(Problem(PointCloud(d.x, d.y), d.a, d.b, eps=0.5), tol=1e-10)
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    Y = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(plan.apply(X, axis=1), plan.matrix @ X, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(plan.apply(Y, axis=0), plan.matrix.T @ Y, rtol=1e-12, atol=1e-15)


def test_pointcloud_value_matches_dense(data):
    cloud = solve(Problem(PointCloud(data.x, data.y, "sqeuclidean"), data.a, data.b, eps=0.3), tol=1e-12)
    dense = solve(Problem(torch.cdist(data.x, data.y) ** 2, data.a, data.b, eps=0.3), tol=1e-12)
    torch.testing.assert_close(cloud.value_linear, dense.value_linear, rtol=1e-11, atol=0)
    torch.testing.assert_close(cloud.value, dense.value, rtol=1e-11, atol=0)


def test_explicit_plan_value_is_linear_cost(data):
    P = torch.outer(data.a, data.b)
    problem = Problem(data.C, data.a, data.b, eps=0.1)
    plan = Plan(problem, torch.zeros_like(data.a), torch.zeros_like(data.b), 0, True, explicit=P)
    torch.testing.assert_close(plan.value, (P * data.C).sum(), rtol=1e-13, atol=0)
    torch.testing.assert_close(plan.marginals[0], data.a, rtol=1e-13, atol=0)
    assert torch.equal(plan.matrix, P)


def _every_plan_type():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(7, 2, generator=gen, dtype=torch.float64)
    problem = otalign.Problem(otalign.PointCloud(x, y), eps=0.5)
    gw = otalign.GWProblem(torch.cdist(x, x), torch.cdist(y, y), eps=0.5)
    return {
        "Plan": otalign.solve(problem, tol=1e-9),
        "explicit Plan (pot emd)": otalign.solve(otalign.Problem(torch.cdist(x, y)), "pot", method="emd"),
        "LowRankPlan": otalign.solve(problem, "lowrank", rank=2, max_iter=20, tol=0),
        "GWPlan": otalign.solve(gw, tol=1e-6),
    }, y


def test_every_plan_type_follows_the_protocol_and_is_immutable():
    import dataclasses

    pytest.importorskip("ot")
    plans, y = _every_plan_type()
    for name, plan in plans.items():
        assert isinstance(plan, otalign.plan.AnyPlan), name
        rows = plan.matrix.sum(-1)
        expected = (plan.matrix @ y) / rows.unsqueeze(-1)
        torch.testing.assert_close(plan.barycentric_map(y), expected, rtol=1e-9, atol=1e-12, msg=name)
        residual = plan.measured_residual()
        assert residual.dtype == torch.float64 and residual.shape == ()
        with pytest.raises(dataclasses.FrozenInstanceError):
            plan.converged = True


def test_barycentric_map_of_a_massless_row_is_zero():
    problem = otalign.Problem(torch.rand(3, 4, dtype=torch.float64), torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    plan = otalign.solve(problem, tol=1e-10)
    mapped = plan.barycentric_map(torch.randn(4, 2, dtype=torch.float64))
    assert torch.equal(mapped[2], torch.zeros(2, dtype=torch.float64)) and torch.isfinite(mapped).all()


@pytest.mark.parametrize("rho", [math.inf, 0.7])
@pytest.mark.parametrize("kind", ["dense", "points"])
def test_mass_from_the_solve_equals_the_row_sums_without_a_pass(rho, kind, monkeypatch):
    """``Plan.mass`` reads the log-mass the solve measured (no pass over the cost) and equals the summed row
    marginal; with a gradient to carry it is the differentiable row sum."""
    import otalign.plan as plan_module

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(7, 2, generator=gen, dtype=torch.float64)
    cost = torch.cdist(x, y) ** 2 if kind == "dense" else PointCloud(x, y)
    problem = Problem(cost, eps=0.3, rho_a=rho, rho_b=rho)
    for tol, max_iter in ((0.0, 7), (1e-9, 1000)):
        plan = solve(problem, max_iter=max_iter, tol=tol, grad="detach")
        assert plan.log_mass is not None
        passes = []
        original = plan_module.logsumexp
        monkeypatch.setattr(plan_module, "logsumexp", lambda *a, **k: passes.append(1) or original(*a, **k))
        mass = plan.mass
        assert not passes
        monkeypatch.setattr(plan_module, "logsumexp", original)
        torch.testing.assert_close(mass, plan.marginals[0].sum(-1), rtol=1e-12, atol=0)
    if kind == "dense":
        leaf = problem.cost.clone().requires_grad_(True)
        attached = solve(Problem(leaf, eps=0.3, rho_a=rho, rho_b=rho), max_iter=7, tol=0.0, grad="unroll")
        assert attached.mass.grad_fn is not None
