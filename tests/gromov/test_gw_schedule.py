"""The outer loop's defaults finish, and ``converged`` is one rule: plan change within ``tol``, the last linear solve
run to ``inner_tol``, the returned plan's measured marginal residual within it."""

import math
import warnings

import pytest
import torch

import otalign
from otalign import ConvergenceWarning, GWProblem, PointCloud
from otalign.gromov import solve_gw
from otalign.gromov.solve import MIN_AUTO_STEP, STALL_PATIENCE, _Schedule
from otalign.solvers import Sinkhorn

#: Linear solves without acceleration: the cases below need linear solves that cannot finish within inner_max_iter
#: (the default's Anderson mixing finishes some of them).
PLAIN = Sinkhorn(acceleration=None)


def _points(n, m, seed, dtype=torch.float64, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    return (spread * torch.rand(n, 3, generator=g, dtype=torch.float64)).to(dtype), \
        (spread * torch.rand(m, 2, generator=g, dtype=torch.float64)).to(dtype)


def _case(seed):
    """A random small GW problem: dtype, size, eps, relaxation, dense or point cloud, square or kl, fused or not."""
    rng = torch.Generator().manual_seed(1000 + seed)
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=rng))]  # noqa: E731
    dtype = pick([torch.float32, torch.float64])
    n, m = pick([5, 12, 20]), pick([4, 9, 15])
    x, y = _points(n, m, seed, dtype)
    eps = pick([0.02, 0.05, 0.1])
    rho = pick([math.inf, math.inf, 1.0, 0.05])
    loss = pick(["square", "square", "kl"])
    dense = loss == "kl" or pick([True, False])
    if loss == "kl":  # positive similarity-like matrices (zero entries are floored at 1e-18 inside the log, as in
        # POT: that spreads the linearised cost over ~40 / eps and makes every linear solve slow)
        geom_x, geom_y = torch.cdist(x, x) ** 2 + 0.5, torch.cdist(y, y) ** 2 + 0.5
    elif dense:
        geom_x, geom_y = torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2
    else:
        geom_x, geom_y = PointCloud(x), PointCloud(y)
    fused = {} if pick([True, False]) else {"cost_xy": torch.cdist(x[:, :2], y) ** 2, "alpha": 0.5}
    return GWProblem(geom_x, geom_y, eps=eps, rho_a=rho, rho_b=rho, loss=loss, **fused)


@pytest.mark.slow  # about 10 s on a loaded 2-core machine
def test_defaults_converge_and_converged_means_the_returned_plan_meets_both_tolerances():
    """Property over 40 random problems: the defaults (``otalign.solve``) converge, and the claim is measured:
    last plan change <= tol, the returned plan's residual in float64 sums <= inner_tol (x 2 in float32)."""
    for seed in range(40):
        problem = _case(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            plan = otalign.solve(problem)
        assert plan.converged, (seed, problem, plan)
        assert float(plan.error.max()) <= 1e-6
        slack = 2.0 if problem.dtype == torch.float32 else 1.0
        assert float(plan.inner.measured_residual().max()) <= slack * 1e-6, (seed, problem)


def test_adaptive_and_fixed_schedules_reach_the_same_fixed_point():
    x, y = _points(12, 9, seed=1)
    problem = GWProblem(PointCloud(x), PointCloud(y), eps=0.05)
    adaptive = solve_gw(problem, tol=1e-9)
    fixed = solve_gw(problem, tol=1e-9, schedule="fixed")
    assert adaptive.converged and fixed.converged
    assert adaptive.inner_iterations < fixed.inner_iterations
    assert torch.allclose(adaptive.matrix, fixed.matrix, atol=1e-8)


def test_a_plan_change_within_tol_is_not_converged_when_the_linear_solve_misses_its_tolerance():
    """The old defect: plan change within tol while the last linear solve stopped above inner_tol, reported
    ``converged=True``. Normal points spread the linearised cost over ~1e4 x eps: 200 iterations are not enough."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randn(15, 2, generator=g, dtype=torch.float64)
    problem = GWProblem(PointCloud(x), PointCloud(y), eps=0.05)
    with pytest.warns(ConvergenceWarning, match=r"inner_max_iter=200.*spreads over .* x eps.*raise inner_max_iter"):
        plan = solve_gw(problem, PLAIN, max_iter=100, inner_max_iter=200, tol=1e-4, inner_tol=1e-9)
    assert float(plan.error) <= 1e-4
    assert not plan.converged
    assert float(plan.inner.measured_residual()) > 1e-9


def test_the_outer_warning_names_max_iter():
    x, y = _points(12, 9, seed=2)
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        plan = solve_gw(GWProblem(PointCloud(x), PointCloud(y), eps=0.05), max_iter=3)
    assert not plan.converged


def test_unbalanced_defaults_converge_where_full_steps_oscillate():
    """eps 0.02, rho 1e-3: full steps make the mass oscillate for ever (plan change stuck near 0.06); the automatic
    step (0.5 for unbalanced problems) converges to a fixed point of the same objective."""
    x, y = _points(20, 15, seed=0)
    problem = GWProblem(PointCloud(x), PointCloud(y), eps=0.02, rho_a=1e-3, rho_b=1e-3)
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        full = solve_gw(problem, max_iter=200, step=1.0)
    assert float(full.error) > 1e-3
    plan = solve_gw(problem)
    assert plan.converged and plan.step == 0.5


def test_warm_start_from_a_converged_plan_polishes_at_once():
    x, y = _points(10, 8, seed=3)
    problem = GWProblem(PointCloud(x), PointCloud(y), eps=0.03)
    first = solve_gw(problem, tol=1e-9)
    again = solve_gw(problem, tol=1e-9, init=first)
    assert again.converged and again.iterations == 1


def test_an_automatic_step_halves_when_the_plan_change_stalls():
    schedule = _Schedule(True, 1e-6, 1e-9, 1.0, True, 1)
    for k in range(STALL_PATIENCE * 2):
        schedule.record(0.05 + 0.01 * (k % 2))  # oscillation: the smallest change never moves after the first window
    assert schedule.step == 0.5
    for k in range(STALL_PATIENCE * 3):  # the first window sets the baseline, each further one halves
        schedule.record(0.05 + 0.01 * (k % 2))
    assert schedule.step == MIN_AUTO_STEP and not schedule.stalled
    for k in range(STALL_PATIENCE):
        schedule.record(0.05 + 0.01 * (k % 2))
    assert schedule.stalled  # a further oscillating window at the smallest step: the loop gives up


def test_a_slow_steady_decrease_keeps_its_step():
    schedule = _Schedule(True, 1e-6, 1e-9, 1.0, True, 1)
    for k in range(STALL_PATIENCE * 10):
        schedule.record(0.1 * 0.9999 ** k)
    assert schedule.step == 1.0


def test_a_given_step_is_kept():
    schedule = _Schedule(True, 1e-6, 1e-9, 0.5, False, 1)
    for k in range(STALL_PATIENCE * 8):
        schedule.record(0.05 + 0.01 * (k % 2))
    assert schedule.step == 0.5 and not schedule.stalled


def test_inner_tolerance_follows_the_plan_change_down_to_inner_tol():
    schedule = _Schedule(True, 1e-6, 1e-9, 1.0, False, 1)
    assert schedule.inner_tolerance() == 1e-3
    schedule.record(1e-5)
    assert schedule.inner_tolerance() == pytest.approx(1e-6)
    schedule.record(1e-7)  # within tol: the next solve polishes
    assert schedule.inner_tolerance() == 1e-9
    fixed = _Schedule(False, 1e-6, 1e-9, 1.0, False, 1)
    assert fixed.inner_tolerance() == 1e-9


def test_schedule_is_checked():
    x, y = _points(5, 4, seed=4)
    with pytest.raises(ValueError, match="schedule"):
        solve_gw(GWProblem(PointCloud(x), PointCloud(y), eps=0.1), schedule="fast")


def test_the_loop_stops_when_polishing_solves_cannot_meet_inner_tol():
    """The plan no longer moves but inner_max_iter cannot finish the linear solve: three polishing solves, then an
    unconverged plan and the warning (instead of outer steps that only continue the linear solve)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randn(15, 2, generator=g, dtype=torch.float64)
    with pytest.warns(ConvergenceWarning, match="raise inner_max_iter"):
        plan = solve_gw(GWProblem(PointCloud(x), PointCloud(y), eps=0.05), PLAIN, max_iter=1000, inner_max_iter=100,
                        tol=1e-3, inner_tol=1e-9)
    assert not plan.converged and plan.iterations < 1000 and float(plan.error) <= 1e-3


def test_a_stiff_problem_stops_early_with_a_warning_that_says_why():
    """Normal points, unscaled, eps 5e-3: the linearised cost spreads over ~6e4 x eps, the inexact linear solves make
    the plan change oscillate above tol at every step size: the loop stops after the window at the smallest
    automatic step instead of running max_iter outer steps of inner_max_iter iterations each."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 3, generator=g, dtype=torch.float64), torch.randn(30, 2, generator=g, dtype=torch.float64)
    with pytest.warns(ConvergenceWarning, match="stalls at .* smallest automatic step .* raise eps or scale"):
        plan = solve_gw(GWProblem(PointCloud(x), PointCloud(y), eps=5e-3), PLAIN, inner_max_iter=50)
    assert not plan.converged and plan.step == MIN_AUTO_STEP and plan.iterations < 1000
