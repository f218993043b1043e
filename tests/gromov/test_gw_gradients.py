"""Gradients of GW solves: unrolled (gradcheck, float64) and envelope (finite differences of the converged value)."""

from __future__ import annotations

import pytest
import torch

from otalign import GWProblem, PointCloud
from otalign.gromov import solve_gw

from gw_reference import clouds, sqdist

FIXED = dict(max_iter=3, tol=0, inner_max_iter=6, inner_tol=0)


@pytest.mark.parametrize("geometry", ["dense", "factorised", "materialised"])
def test_unroll_gradcheck(geometry):
    x, y, a, b = clouds(5, 4, seed=0)
    x.requires_grad_(True)
    y.requires_grad_(True)

    def value(x, y):
        if geometry == "dense":
            problem = GWProblem(sqdist(x), sqdist(y), a, b, eps=0.2)
            return solve_gw(problem, **FIXED).value_entropic
        problem = GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.2)
        plan = solve_gw(problem, materialize=geometry == "materialised", **FIXED)
        return plan.value_entropic + (plan.matrix * torch.arange(20.0, dtype=x.dtype).view(5, 4)).sum()

    assert torch.autograd.gradcheck(value, (x, y))


@pytest.mark.slow  # several seconds on a loaded 2-core machine
def test_unroll_gradcheck_fused_unbalanced_and_warm_start_to_tolerance():
    x, y, a, b = clouds(5, 4, seed=1)
    z = torch.randn(5, 2, dtype=x.dtype, generator=torch.Generator().manual_seed(1), requires_grad=True)
    x.requires_grad_(True)

    def fused(x, z):
        problem = GWProblem(PointCloud(x), sqdist(y), a, b, eps=0.2, alpha=0.6, cost_xy=PointCloud(z, y))
        return solve_gw(problem, max_iter=3, tol=0, inner_max_iter=30, inner_tol=1e-11).matrix

    def unbalanced(x, z):
        problem = GWProblem(sqdist(x), sqdist(y), a, b, eps=0.2, alpha=0.5, cost_xy=torch.cdist(z, y), rho_a=0.5,
                            rho_b=1.0)
        return solve_gw(problem, **FIXED).value

    assert torch.autograd.gradcheck(fused, (x, z))
    assert torch.autograd.gradcheck(unbalanced, (x, z))


@pytest.mark.parametrize("kind", ["points", "costs"])
def test_envelope_gradient_is_the_derivative_of_the_optimal_value(kind):
    x, y, a, b = clouds(6, 5, seed=2)
    settings = dict(max_iter=2000, tol=1e-12, inner_tol=1e-13, inner_max_iter=5000)

    def problem_of(t):
        if kind == "points":
            return GWProblem(PointCloud(t), PointCloud(y), a, b, eps=0.1, alpha=0.7, cost_xy=PointCloud(t[:, :2], y))
        return GWProblem(t, sqdist(y), a, b, eps=0.1)

    t0 = x.clone() if kind == "points" else sqdist(x)
    t = t0.clone().requires_grad_(True)
    plan = solve_gw(problem_of(t), grad="envelope", **settings)
    assert plan.converged and not plan.matrix.requires_grad
    (grad,) = torch.autograd.grad(plan.value_entropic, t)
    direction = torch.randn(t0.shape, dtype=t0.dtype, generator=torch.Generator().manual_seed(3))
    if kind == "costs":
        direction = direction + direction.T
    h = 1e-5
    up = solve_gw(problem_of(t0 + h * direction), grad="detach", **settings).value_entropic
    down = solve_gw(problem_of(t0 - h * direction), grad="detach", **settings).value_entropic
    finite_difference = (up - down) / (2 * h)
    assert abs(float(finite_difference - (grad * direction).sum())) < 1e-6 * max(1.0, abs(float(finite_difference)))


def test_detach_has_no_graph():
    x, y, a, b = clouds(5, 4, seed=3)
    x.requires_grad_(True)
    plan = solve_gw(GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.2), grad="detach", **FIXED)
    assert not plan.value.requires_grad and not plan.matrix.requires_grad
    with pytest.raises(ValueError, match="grad"):
        solve_gw(GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.2), grad="implicit")
