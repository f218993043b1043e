"""The proximal-point solver: convergence to exact OT (``ot.emd``), its outer steps as entropic plans at eps/k,
kept iterates, stopping, and batching."""

from __future__ import annotations

import pytest
import torch

from otalign import Plan, Problem, solve

ot = pytest.importorskip("ot")


def integer_problem(n: int, m: int, seed: int = 3):
    """Uniform masses, integer costs in [2, 20) except a planted coupling of cost 1: row ``perm[k]`` goes to
    column ``k mod m`` (an assignment when n = m, two rows per column when n = 2m). That coupling is the unique
    exact optimum, of cost 1 (any other coupling moves some mass at cost >= 2), so the entropic plans at eps/k
    approach it quickly."""
    gen = torch.Generator().manual_seed(seed)
    C = torch.randint(2, 20, (n, m), generator=gen).to(torch.float64)
    rows = torch.randperm(n, generator=gen)
    C[rows, torch.arange(n) % m] = 1.0
    return C, torch.full((n,), 1 / n, dtype=torch.float64), torch.full((m,), 1 / m, dtype=torch.float64)


@pytest.mark.parametrize("shape", [(12, 12), (16, 8)])
def test_matches_emd(shape):
    """60 outer steps of 20 sweeps from eps = 0.5 (last step: eps/60 ~ 0.008). Plan entries (0 or 1/n) within
    1e-6, cost within 1e-4 relative."""
    C, a, b = integer_problem(*shape)
    P_emd = ot.emd(a, b, C)
    planted = torch.where(C == 1, 1 / shape[0], 0.0).to(C.dtype)
    torch.testing.assert_close(P_emd, planted, rtol=0, atol=1e-8)  # ot.emd rounds masses at ~1e-8
    plan = solve(Problem(C, a, b, eps=0.5), "proximal", max_iter=60, tol=0, inner_iter=20)
    torch.testing.assert_close(plan.matrix, P_emd, rtol=0, atol=1e-6)
    cost, cost_emd = (plan.matrix * C).sum(), (P_emd * C).sum()
    assert abs(cost / cost_emd - 1) <= 1e-4
    assert plan.problem.eps == pytest.approx(0.5 / 60)


def test_outer_step_k_is_entropic_ot_at_eps_over_k(data):
    """With enough inner sweeps, the plan of outer step k is the Sinkhorn plan of the same problem at eps/k."""
    eps = 0.3
    plan = solve(Problem(data.C, data.a, data.b, eps=eps), "proximal", max_iter=4, tol=0, inner_iter=400,
                 keep_iterates=True)
    assert len(plan.iterates) == 4
    for k, (f, g) in enumerate(plan.iterates, start=1):
        staged = Problem(data.C, data.a, data.b, eps=eps / k)
        reference = solve(staged, tol=1e-13, max_iter=100_000)
        torch.testing.assert_close(Plan(staged, f, g, 0, False).matrix, reference.matrix, rtol=0, atol=1e-10)
    torch.testing.assert_close(plan.iterates[-1][0], plan.f, rtol=0, atol=0)


def test_stops_when_the_plan_stops_moving():
    C, a, b = integer_problem(12, 12)
    plan = solve(Problem(C, a, b, eps=0.5), "proximal", max_iter=500, tol=1e-9, inner_iter=20, keep_iterates=True)
    assert plan.converged and plan.iterations < 500
    assert len(plan.iterates) == plan.iterations
    assert plan.error <= 1e-9


def test_batched_equals_loop(batch_data):
    d = batch_data
    batched = solve(Problem(d.C, d.a, d.b, eps=0.2), "proximal", max_iter=5, tol=0, inner_iter=5)
    for i in range(d.C.shape[0]):
        single = solve(Problem(d.C[i], d.a[i], d.b[i], eps=0.2), "proximal", max_iter=5, tol=0, inner_iter=5)
        torch.testing.assert_close(batched.matrix[i], single.matrix, rtol=0, atol=1e-13)
        torch.testing.assert_close(batched.f[i], single.f, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps, bound", [(100, 5e-3), pytest.param(300, 5e-4, marks=pytest.mark.slow)])
def test_point_clouds_at_small_eps_keep_their_marginals(steps, bound):
    """50 x 40 Gaussian clouds, eps = 0.05: 100 outer steps used to leave a row-marginal error of 0.12 (0.10 after
    1000) and <C, P> below the exact optimum, reporting converged=True after 345 steps. Each eps/k stage must now
    balance the marginals before eps moves on: the error is small, <C, P> is not below ot.emd's cost, and the
    plan is not called converged unless its residuals are within tol."""
    from otalign import ConvergenceWarning, PointCloud

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    problem = Problem(PointCloud(x, y), eps=0.05)
    C = problem.cost
    optimum = float((ot.emd(problem.a, problem.b, C) * C).sum())
    with pytest.warns(ConvergenceWarning, match="inner_iter"):
        plan = solve(problem, "proximal", max_iter=steps)
    rows, cols = plan.marginal_error
    assert float(rows) <= bound and float(cols) <= bound
    assert float(plan.value_linear) >= optimum - 2 * float(C.max()) * (float(rows) + float(cols))
    assert not plan.converged
