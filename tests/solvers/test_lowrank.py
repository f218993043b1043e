"""The low-rank Sinkhorn solver: constraints, quality on low-rank problems, POT parity, monotone objective, errors,
batching, warm starts and gradients."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import otalign
from otalign import LowRankPlan, PointCloud, Problem, solve
from otalign.solvers import LowRankSinkhorn, available

F64 = torch.float64


def clusters(k: int, per: int, spread: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clouds of ``k`` tight clusters of ``per`` points around the same centres (4 apart in 2-D)."""
    gen = torch.Generator().manual_seed(seed)
    centres = 4.0 * torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=F64)[:k]
    x = centres[:, None] + spread * torch.randn(k, per, 2, generator=gen, dtype=F64)
    y = centres[:, None] + spread * torch.randn(k, per, 2, generator=gen, dtype=F64)
    return x.reshape(-1, 2), y.reshape(-1, 2)


def test_registered_and_returns_a_lowrank_plan(data):
    assert "lowrank" in available()
    assert solve(Problem(data.C, eps=0.3), "lowrank", rank=2, max_iter=2, tol=0).epsilon == 0.0
    assert solve(Problem(data.C, eps=0.3), "lowrank", rank=2, epsilon=None, max_iter=2, tol=0).epsilon == 0.3
    plan = solve(Problem(data.C, data.a, data.b, eps=0.05), "lowrank", rank=2, max_iter=20, tol=0)
    assert isinstance(plan, LowRankPlan)
    assert plan.Q.shape == (8, 2) and plan.R.shape == (6, 2) and plan.inner_marginal.shape == (2,)
    with pytest.warns(DeprecationWarning, match="inner_marginal"):
        assert plan.g is plan.inner_marginal
    assert plan.iterations == 20 and not plan.converged and plan.history.shape == (20,)


def test_marginals_and_inner_constraints_hold(make):
    d = make(20, 15, seed=3)
    plan = solve(Problem(d.C, d.a, d.b, eps=0.02), "lowrank", rank=4, max_iter=1, tol=0, inner_tol=1e-10,
                 inner_max_iter=5000)
    assert float(plan.projection_error) <= 1e-10
    rows, cols = plan.marginal_error
    assert float(rows) <= 1e-10 and float(cols) <= 1e-10
    torch.testing.assert_close(plan.Q.sum(0), plan.inner_marginal, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(plan.R.sum(0), plan.inner_marginal, rtol=1e-12, atol=1e-14)
    assert bool((plan.Q >= 0).all() and (plan.R >= 0).all() and (plan.inner_marginal > 0).all())
    torch.testing.assert_close(plan.matrix.sum(1), d.a, rtol=0, atol=1e-10)
    assert torch.linalg.matrix_rank(plan.matrix) <= 4


def test_value_close_to_full_solve_when_the_optimal_plan_is_low_rank():
    # 3 tight clusters matched to 3 clusters: the entropic plan is nearly block-constant, i.e. of rank 3
    x, y = clusters(3, 12, spread=0.05)
    problem = Problem(PointCloud(x, y), eps=0.05)
    full = solve(problem, max_iter=5000)
    plan = solve(problem, "lowrank", rank=3, max_iter=200, tol=1e-8, inner_max_iter=300)
    rank_one = float((problem.cost * (problem.a[:, None] * problem.b[None, :])).sum())  # the only rank-1 plan
    gap = float(plan.value_linear - full.value_linear)
    assert abs(gap) <= 0.01 * rank_one  # within 1% of the scale of the problem
    assert abs(gap) <= 0.005  # and, in cost units, of the within-cluster spread (2 * 0.05^2 * 2 = 0.01)
    assert plan.marginal_error[0] <= 1e-6


@pytest.mark.slow
def test_matches_pot_lowrank_sinkhorn_with_aligned_conventions():
    """POT's ``lowrank_sinkhorn`` with ``init="deterministic"``, ``rescale_cost=False`` and ``gamma_init="rescale"``
    is this solver with ``initializer="rank2"``, ``gamma_rescale="square"``, 100 steps and the same Dykstra
    tolerance: same factors. POT's ``log["value"]`` / ``["value_linear"]`` are computed with the ``g`` of the
    step before the last one (their ``1/g`` is the one of the last gradient), so the values are compared with
    ``<C, P>`` of POT's own factors instead."""
    ot = pytest.importorskip("ot")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 2, generator=gen, dtype=F64), torch.randn(15, 2, generator=gen, dtype=F64) + 0.5
    a, b = torch.full((20,), 1 / 20, dtype=F64), torch.full((15,), 1 / 15, dtype=F64)
    Qp, Rp, gp = ot.lowrank_sinkhorn(x.numpy(), y.numpy(), a.numpy(), b.numpy(), reg=0.1, rank=3, rescale_cost=False,
                                     init="deterministic", stopThr=1e-9, numItermax=5000)
    plan = solve(Problem(PointCloud(x, y), a, b, eps=1.0), "lowrank", rank=3, epsilon=0.1, initializer="rank2",
                 gamma_rescale="square", max_iter=100, tol=0, inner_tol=1e-9, inner_max_iter=5000)
    for ours, theirs in ((plan.Q, Qp), (plan.R, Rp), (plan.inner_marginal, gp)):
        torch.testing.assert_close(ours, torch.from_numpy(theirs), rtol=1e-8, atol=1e-12)
    P_pot = torch.from_numpy(Qp / gp[None, :] @ Rp.T)
    torch.testing.assert_close(plan.value_linear, (torch.cdist(x, y) ** 2 * P_pot).sum(), rtol=1e-8, atol=0)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning")
@pytest.mark.parametrize("epsilon", [0.0, 0.01, 0.05])
def test_objective_decreases_over_iterations(make, seed, epsilon):
    d = make(20, 15, seed=seed)
    plan = solve(Problem(d.C, d.a, d.b, eps=0.05), "lowrank", rank=3, epsilon=epsilon, max_iter=20, tol=0,
                 inner_max_iter=100)
    history = plan.history
    assert bool((history[1:] <= history[:-1] + 1e-9 * history.abs().max()).all())
    assert float(history[-1]) < float(history[0])


def test_stops_at_tolerance_and_flags_it(make):
    d = make(20, 15, seed=2)
    plan = solve(Problem(d.C, d.a, d.b, eps=0.05), "lowrank", rank=2, epsilon=None, max_iter=500, tol=1e-5,
                 inner_max_iter=200)
    assert plan.converged and plan.iterations < 500 and float(plan.error) <= 1e-5
    with pytest.warns(otalign.ConvergenceWarning, match="no convergence"):
        plan = solve(Problem(d.C, d.a, d.b, eps=0.01), "lowrank", rank=2, max_iter=2, tol=1e-12)
    assert not plan.converged


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning")
def test_batched_equals_looped(batch_data):
    d = batch_data
    options = dict(rank=2, max_iter=40, tol=1e-5, inner_max_iter=100)
    batched = solve(Problem(d.C, d.a, d.b, eps=0.02), "lowrank", **options)
    for i in range(d.C.shape[0]):
        single = solve(Problem(d.C[i], d.a[i], d.b[i], eps=0.02), "lowrank", **options)
        for ours, ref in ((batched.Q[i], single.Q), (batched.R[i], single.R), (batched.inner_marginal[i], single.inner_marginal)):
            torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning")
def test_point_cloud_factored_cost_equals_dense_cost(data):
    eps, options = 0.05, dict(rank=3, max_iter=10, tol=0, inner_max_iter=100)
    cloud = solve(Problem(PointCloud(data.x, data.y), data.a, data.b, eps=eps), "lowrank", **options)
    dense = solve(Problem(torch.cdist(data.x, data.y) ** 2, data.a, data.b, eps=eps), "lowrank", **options)
    assert cloud.operator.kind == "factored" and dense.operator.kind == "dense"
    for ours, ref in ((cloud.Q, dense.Q), (cloud.R, dense.R), (cloud.inner_marginal, dense.inner_marginal)):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning")
def test_warm_start_continues_the_run(data):
    problem = Problem(data.C, data.a, data.b, eps=0.05)
    options = dict(rank=2, tol=0, inner_max_iter=50)
    whole = solve(problem, "lowrank", max_iter=8, **options)
    first = solve(problem, "lowrank", max_iter=4, **options)
    second = solve(problem, "lowrank", max_iter=4, init=first, **options)
    torch.testing.assert_close(second.Q, whole.Q, rtol=1e-10, atol=1e-13)
    third = solve(problem, "lowrank", max_iter=4, init=(first.Q, first.R, first.inner_marginal), **options)
    torch.testing.assert_close(third.Q, second.Q, rtol=0, atol=0)


@pytest.mark.slow
def test_float32_large_cloud_has_no_n_by_m_and_stays_finite():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5000, 3, generator=gen), torch.randn(5000, 3, generator=gen) + 100.0  # far from 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", otalign.ConvergenceWarning)
        plan = solve(Problem(PointCloud(x, y), eps=0.5), "lowrank", rank=5, max_iter=2, tol=0, inner_max_iter=20)
    assert plan.Q.dtype == torch.float32 and bool(torch.isfinite(plan.Q).all())
    # E|x - y|^2 = |shift|^2 + 2 d = 30006 for any coupling of these clouds; the factored cost must not cancel
    assert abs(float(plan.value_linear) / 30006 - 1) < 0.01


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(rank=0), r"^rank: expected"),
        (dict(rank=2.5), r"^rank: expected"),
        (dict(rank=2, epsilon=-1.0), r"^epsilon:"),
        (dict(rank=2, gamma=0.0), r"^gamma:"),
        (dict(rank=2, gamma_rescale="cubic"), r"^gamma_rescale:"),
        (dict(rank=2, initializer="kmeans++"), r"^initializer:"),
        (dict(rank=2, alpha=0.0), r"^alpha:"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        LowRankSinkhorn(**options)


def test_bad_problems_are_named(data):
    problem = Problem(data.C, data.a, data.b, eps=0.1)
    with pytest.raises(ValueError, match=r"^rank: 7 exceeds min\(n, m\) = 6"):
        solve(problem, "lowrank", rank=7)
    with pytest.raises(ValueError, match=r"^solver: 'lowrank' does not support relaxed marginals.*balanced problems only"):
        solve(Problem(data.C, data.a, data.b, eps=0.1, rho_a=1.0), "lowrank", rank=2)
    with pytest.raises(ValueError, match=r"^solver: 'lowrank' does not support forbidden pairs"):
        solve(Problem(data.C, data.a, data.b, eps=0.1, mask=torch.eye(8, 6, dtype=torch.bool)), "lowrank", rank=2)
    with pytest.raises(ValueError, match=r"^alpha: expected alpha < total mass / rank"):
        solve(problem, "lowrank", rank=4, alpha=0.3)
    with pytest.raises(ValueError, match=r"^solver: 'lowrank' does not support implicit differentiation"):
        solve(problem, "lowrank", rank=2, grad="implicit")
    with pytest.raises(ValueError, match=r"^init: Q must have shape \(8, 2\)"):
        solve(problem, "lowrank", rank=2, init=(torch.ones(8, 3, dtype=F64), torch.ones(6, 2, dtype=F64),
                                                 torch.ones(2, dtype=F64)))
    with pytest.raises(TypeError, match=r"^init: expected a LowRankPlan or a triple"):
        solve(problem, "lowrank", rank=2, init=solve(problem))


def test_gradcheck_unrolled_value_float64():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 2, generator=gen, dtype=F64), torch.randn(3, 2, generator=gen, dtype=F64)
    a = torch.rand(4, generator=gen, dtype=F64) + 0.5
    a = a / a.sum()
    solver = LowRankSinkhorn(rank=2, epsilon=0.1, inner_tol=0.0, inner_max_iter=8)  # fixed counts: smooth map

    def value(x, y, a):
        problem = Problem(PointCloud(x, y), a, None, eps=0.1)
        plan = solver(problem, max_iter=3, tol=0)
        return plan.value, plan.value_linear

    inputs = (x.requires_grad_(), y.requires_grad_(), a.requires_grad_())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", otalign.ConvergenceWarning)
        assert torch.autograd.gradcheck(value, inputs, atol=1e-6, rtol=1e-5, fast_mode=True)


@pytest.mark.slow
def test_envelope_gradient_matches_finite_differences_at_convergence(data):
    """At a (local) minimum, d value / d cost = P (Danskin): the envelope gradient of ``value`` must match a
    finite difference of the converged value, each solve restarted from the same factors."""
    options = dict(rank=2, max_iter=3000, tol=1e-13, inner_tol=1e-11, inner_max_iter=5000)
    C = data.C.clone().requires_grad_()
    plan = solve(Problem(C, data.a, data.b, eps=0.05), "lowrank", grad="envelope", **options)
    assert plan.converged and plan.grad == "envelope" and not plan.Q.requires_grad
    (grad,) = torch.autograd.grad(plan.value, C)
    torch.testing.assert_close(grad, plan.matrix.detach(), rtol=1e-12, atol=1e-15)
    direction = torch.randn(data.C.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    h = 1e-5
    start = (plan.Q, plan.R, plan.inner_marginal)
    values = [float(solve(Problem(data.C + s * h * direction, data.a, data.b, eps=0.05), "lowrank", init=start,
                          **options).value) for s in (1, -1)]
    assert math.isclose((values[0] - values[1]) / (2 * h), float((grad * direction).sum()), rel_tol=1e-4)


def test_detach_has_no_graph(data):
    C = data.C.clone().requires_grad_()
    plan = solve(Problem(C, data.a, data.b, eps=0.05), "lowrank", rank=2, max_iter=5, tol=0, grad="detach")
    assert not plan.value.requires_grad and not plan.Q.requires_grad


def test_losses_refuse_it_with_the_reason():
    from otalign.losses import GCAInfoNCE

    with pytest.raises(ValueError, match=r"^solver: 'lowrank' does not support exactly max_iter iterations.*no dual potentials"):
        GCAInfoNCE(solver="lowrank", solver_options={"rank": 2})


@pytest.mark.parametrize("cost", ["sqeuclidean", "dense", "blocked"])
@pytest.mark.parametrize("tol, epsilon", [(0.0, 0.0), (0.0, 0.05), (1e-7, 0.0)])
def test_steps_without_a_graph_equal_the_recorded_steps(cost, tol, epsilon):
    """Without a graph the steps run in place on buffers reused across steps (and Dykstra fused); with a point
    cloud that needs a gradient every step is recorded out of place: the same factors up to rounding, batched, with
    a zero mass, under Dykstra (tol 0) and Newton (tol > 0)."""
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(2, 30, 2, generator=gen, dtype=F64), torch.randn(2, 24, 2, generator=gen, dtype=F64)
    a = torch.rand(2, 30, generator=gen, dtype=F64) + 0.5
    a[1, 3] = 0.0
    a = a / a.sum(-1, keepdim=True)

    def plan(grad: bool) -> LowRankPlan:
        xs, ys = x.clone().requires_grad_(grad), y.clone().requires_grad_(grad)
        if cost == "dense":
            geometry = otalign.DenseCost(torch.cdist(xs, ys) ** 2)
        else:
            power = (lambda u, v: torch.cdist(u, v) ** 2) if cost == "blocked" else "sqeuclidean"
            geometry = PointCloud(xs, ys, cost=power)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return solve(Problem(geometry, a, eps=0.1), "lowrank", rank=3, epsilon=epsilon, max_iter=15, tol=tol,
                         inner_max_iter=200)

    recorded, fused = plan(True), plan(False)
    assert recorded.Q.requires_grad and not fused.Q.requires_grad
    assert fused.Q.is_contiguous() and fused.R.is_contiguous()  # stored transposed during the solve, not after
    assert recorded.iterations == fused.iterations and recorded.projection_iterations == fused.projection_iterations
    for ours, ref in ((fused.Q, recorded.Q), (fused.R, recorded.R), (fused.inner_marginal, recorded.inner_marginal)):
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-8, atol=1e-13)
    assert float(fused.Q[1, 3].abs().max()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_projections_without_a_stopping_test_run_as_one_block(dtype):
    """inner_tol=0: each Dykstra projection runs exactly inner_max_iter iterations in one block (checked once); the
    factors are those of projections checked every 10 iterations against an unreachable tolerance."""
    gen = torch.Generator().manual_seed(6)
    x, y = torch.randn(40, 2, generator=gen, dtype=dtype), torch.randn(30, 2, generator=gen, dtype=dtype) + 1.0
    problem = Problem(PointCloud(x, y), eps=0.1)
    plans = []
    for inner_tol in (0.0, 1e-300):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plans.append(solve(problem, "lowrank", rank=4, max_iter=12, tol=0, inner_max_iter=35, inner_tol=inner_tol))
    one_block, checked = plans
    assert one_block.projection_iterations == checked.projection_iterations == 12 * 35
    rtol, atol = (1e-4, 1e-6) if dtype == torch.float32 else (1e-9, 1e-13)
    for ours, ref in ((one_block.Q, checked.Q), (one_block.R, checked.R)):
        torch.testing.assert_close(ours, ref, rtol=rtol, atol=atol)


def test_dykstra_to_a_tolerance_without_a_graph_equals_the_recorded_steps_batched():
    """projection="dykstra" with tol > 0, batched: the elements stop at different steps (the stopped ones kept
    by selection, in the transposed storage of a solve without a graph); the factors equal the recorded path's."""
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(3, 16, 2, generator=gen, dtype=F64), torch.randn(3, 12, 2, generator=gen, dtype=F64)
    x[1] *= 3.0

    def plan(grad: bool) -> LowRankPlan:
        return solve(Problem(PointCloud(x.clone().requires_grad_(grad), y), eps=0.1), "lowrank", rank=2,
                     epsilon=0.05, max_iter=100, tol=1e-3, projection="dykstra", inner_max_iter=200)

    recorded, fused = plan(True), plan(False)
    assert fused.converged and recorded.iterations == fused.iterations < 100
    assert recorded.projection_iterations == fused.projection_iterations
    torch.testing.assert_close(fused.error, recorded.error, rtol=1e-8, atol=0)
    assert len(set(fused.error.tolist())) == 3
    for ours, ref in ((fused.Q, recorded.Q), (fused.R, recorded.R), (fused.inner_marginal, recorded.inner_marginal)):
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-8, atol=1e-13)
