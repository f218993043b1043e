"""Accelerated Sinkhorn (momentum, Anderson): the same fixed point as plain Sinkhorn, batched = looped, fewer
iterations where plain Sinkhorn is slow, and a fallback that keeps a bad relaxation from diverging."""

from __future__ import annotations

import warnings

import pytest
import torch

import otalign
from otalign import Problem, solve
from otalign.solvers import Sinkhorn


def slow_problem(dtype=torch.float64, lead=(), seed=0) -> Problem:
    """Uniform points in the unit square at eps = 0.002: plain Sinkhorn needs about 1,600 iterations."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(lead + (120, 2), generator=gen, dtype=torch.float64).to(dtype)
    y = torch.rand(lead + (90, 2), generator=gen, dtype=torch.float64).to(dtype)
    return Problem(otalign.costs.sqeuclidean(x, y), eps=0.002)


@pytest.mark.parametrize("acceleration", ["momentum", "anderson"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_same_fixed_point_as_plain_sinkhorn(acceleration, dtype):
    problem = slow_problem(dtype)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    plain = solve(problem, Sinkhorn(kernel="blocked"), tol=tol, max_iter=20000)
    fast = solve(problem, Sinkhorn(kernel="blocked", acceleration=acceleration), tol=tol, max_iter=20000)
    assert plain.converged and fast.converged
    assert fast.iterations <= plain.iterations
    # both plans are within tol of the marginals: their distance is of the order of tol / (strong convexity)
    assert float((fast.matrix.double() - plain.matrix.double()).abs().sum()) <= 100 * tol


def test_anderson_needs_several_times_fewer_iterations():
    problem = slow_problem()
    plain = solve(problem, Sinkhorn(kernel="blocked"), tol=1e-9, max_iter=20000)
    fast = solve(problem, Sinkhorn(kernel="blocked", acceleration="anderson"), tol=1e-9, max_iter=20000)
    assert fast.iterations * 3 <= plain.iterations, (fast.iterations, plain.iterations)


@pytest.mark.parametrize("acceleration", ["momentum", "anderson"])
def test_batched_equals_looped(acceleration):
    problem = slow_problem(lead=(2,), seed=3)
    solver = Sinkhorn(kernel="blocked", acceleration=acceleration)
    batched = solve(problem, solver, tol=1e-9, max_iter=20000)
    for i in range(2):
        alone = solve(Problem(problem.cost[i], eps=problem.eps), solver, tol=1e-9, max_iter=20000)
        torch.testing.assert_close(batched.matrix[i], alone.matrix, rtol=0, atol=1e-7)


def test_a_too_large_fixed_relaxation_falls_back():
    problem = slow_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error", otalign.ConvergenceWarning)
        plan = solve(problem, Sinkhorn(kernel="blocked", acceleration="momentum", omega=1.99), tol=1e-8,
                     max_iter=20000)
    assert plan.converged


@pytest.mark.parametrize("relaxation", [(1.0, 1.0), (float("inf"), 0.0)])
def test_relaxed_problems(relaxation):
    gen = torch.Generator().manual_seed(4)
    problem = Problem(torch.rand(30, 20, generator=gen, dtype=torch.float64), eps=0.01,
                      rho_a=relaxation[0], rho_b=relaxation[1])
    plain = solve(problem, tol=1e-10, max_iter=20000)
    for acceleration in ("momentum", "anderson"):
        fast = solve(problem, Sinkhorn(acceleration=acceleration), tol=1e-10, max_iter=20000)
        assert fast.converged
        torch.testing.assert_close(fast.matrix, plain.matrix, rtol=0, atol=1e-8)


@pytest.mark.parametrize("options, name", [({"acceleration": "nesterov"}, "acceleration"),
                                           ({"acceleration": "momentum", "omega": 2.0}, "omega"),
                                           ({"acceleration": "anderson", "memory": 0}, "memory")])
def test_bad_options_are_named(options, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        Sinkhorn(**options)
