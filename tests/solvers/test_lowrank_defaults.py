"""Low-rank Sinkhorn with its defaults: converges on small random problems, ``converged`` is a measurement on the
returned plan, and a solve that stops short names the knob to turn."""

from __future__ import annotations

import warnings

import pytest
import torch

import otalign
from otalign import PointCloud, Problem, solve

F64 = torch.float64


def cloud_problem(n: int, m: int, d: int, seed: int, dtype) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, d, generator=gen, dtype=F64), torch.rand(m, d, generator=gen, dtype=F64)
    return Problem(PointCloud(x.to(dtype), y.to(dtype)), eps=0.1)


def residual64(plan) -> float:
    """The larger marginal L1 residual of ``plan.matrix`` in float64, computed here from the factors."""
    Q, R, g = (x.double() for x in (plan.Q, plan.R, plan.inner_marginal))
    P = (Q / g) @ R.T
    a, b = plan.problem.a.double(), plan.problem.b.double()
    return max(float((P.sum(1) - a).abs().sum()), float((P.sum(0) - b).abs().sum()))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("seed", [0, 1])
def test_defaults_converge_on_small_random_problems(dtype, seed):
    problem = cloud_problem(40, 30, 2, seed, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", otalign.ConvergenceWarning)
        plan = solve(problem, "lowrank", rank=3)
    assert plan.converged and plan.iterations < 1000
    assert residual64(plan) <= 1e-6
    assert float(plan.projection_error) <= 1e-6 and float(plan.projection_tolerance) == pytest.approx(1e-6)


@pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning")
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_converged_implies_the_measured_residual(dtype):
    """Random problems, ranks, step caps and tolerances: whenever ``converged`` is True, the float64 residual of the
    returned plan is within ``max(tol, inner_tol)``."""
    gen = torch.Generator().manual_seed(0)
    claims = 0
    for case in range(12):
        n, m = (int(v) for v in torch.randint(8, 30, (2,), generator=gen))
        rank = int(torch.randint(2, 5, (1,), generator=gen))
        tol = [1e-3, 1e-4, 1e-6][case % 3]
        inner_tol = [1e-6, 1e-5][case % 2]
        plan = solve(cloud_problem(n, m, 3, case, dtype), "lowrank", rank=rank, max_iter=[5, 40, 200][case % 3],
                     tol=tol, inner_tol=inner_tol, inner_max_iter=300)
        if plan.converged:
            claims += 1
            assert residual64(plan) <= max(tol, inner_tol)
    assert claims >= 3  # the property was exercised


def test_too_few_steps_warn_and_name_max_iter():
    problem = cloud_problem(40, 30, 2, 0, F64)
    with pytest.warns(otalign.ConvergenceWarning, match=r"no convergence after 3 iterations.*raise max_iter"):
        plan = solve(problem, "lowrank", rank=3, max_iter=3)
    assert not plan.converged


def test_a_capped_projection_warns_and_names_inner_max_iter():
    problem = cloud_problem(40, 30, 2, 0, F64)
    with pytest.warns(otalign.ConvergenceWarning, match=r"inner_max_iter=1 .* raise inner_max_iter"):
        plan = solve(problem, "lowrank", rank=3, max_iter=40, inner_max_iter=1, tol=1e-12)
    assert not plan.converged


def test_fixed_projection_counts_do_not_warn_about_the_projection():
    problem = cloud_problem(20, 15, 2, 0, F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", otalign.ConvergenceWarning)
        solve(problem, "lowrank", rank=2, max_iter=3, tol=0, inner_tol=0.0, inner_max_iter=7)


def test_a_plan_as_init_carries_its_projection_scalings():
    problem = cloud_problem(30, 20, 2, 1, F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", otalign.ConvergenceWarning)
        first = solve(problem, "lowrank", rank=3, max_iter=30)
        assert first.scalings is not None and all(x.shape == (3,) for x in first.scalings)
        warm = solve(problem, "lowrank", rank=3, max_iter=1, init=first)
        cold = solve(problem, "lowrank", rank=3, max_iter=1, init=(first.Q, first.R, first.inner_marginal))
    # the same step, its projection started closer; both to the same (first-step) tolerance
    assert warm.projection_iterations < cold.projection_iterations
    for plan in (warm, cold):
        assert float(plan.projection_error) <= float(plan.projection_tolerance)
