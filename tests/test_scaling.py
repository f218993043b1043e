"""The kernel-domain soft-min (``Sinkhorn(kernel="auto")`` with ``tol=0``) against the log-domain soft-min: same
iterates, same gradients, through the same loop; it is used only where the cost spread allows it."""

from __future__ import annotations

import math

import pytest
import torch

import otalign
from otalign import Problem, solve
from otalign.solvers import Sinkhorn
from otalign.softmin import KernelDomain, choose_softmin
from otalign.softmin.kernel_domain import spread_allows

RHOS = [(math.inf, math.inf), (0.5, 2.0), (math.inf, 0.0), (0.0, 0.7), (math.inf, 0.3)]


def outputs(kernel, cost, a, b, rho, reference, iterations, mask=None):
    """Potentials and the gradients of a loss of both potentials and the plan, w.r.t. cost, a and b."""
    cost, a, b = (t.clone().requires_grad_() for t in (cost, a, b))
    problem = Problem(cost, a, b, eps=0.3, rho_a=rho[0], rho_b=rho[1], reference=reference, mask=mask)
    plan = solve(problem, Sinkhorn(kernel=kernel), max_iter=iterations, tol=0)
    gen = torch.Generator().manual_seed(1)
    weights_f = torch.randn(plan.f.shape, dtype=cost.dtype, generator=gen)
    weights_g = torch.randn(plan.g.shape, dtype=cost.dtype, generator=gen)
    loss = (plan.f * weights_f).sum() + (plan.g * weights_g).sum() + plan.matrix.square().sum()
    loss.backward()
    grads = [torch.zeros_like(t) if t.grad is None else t.grad for t in (cost, a, b)]
    return [plan.f.detach(), plan.g.detach(), *grads]


@pytest.mark.parametrize("shape", [(7, 5), (3, 7, 5)])
@pytest.mark.parametrize("rho", RHOS)
@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_fused_equals_log_domain_unroll(shape, rho, reference):
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(shape, dtype=torch.float64, generator=gen)
    a = torch.rand(shape[:-1], dtype=torch.float64, generator=gen) + 0.1
    b = torch.rand(shape[:-2] + shape[-1:], dtype=torch.float64, generator=gen) + 0.1
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    fused = outputs("auto", cost, a, b, rho, reference, 6)
    looped = outputs("blocked", cost, a, b, rho, reference, 6)
    for x, y in zip(fused, looped):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_fused_with_mask_equals_log_domain():
    cost = torch.rand(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ones = torch.ones(6, dtype=torch.float64)
    mask = torch.eye(6, dtype=torch.bool)
    fused = outputs("auto", cost, ones, ones, (math.inf, math.inf), "uniform", 4, mask)
    looped = outputs("blocked", cost, ones, ones, (math.inf, math.inf), "uniform", 4, mask)
    for x, y in zip(fused, looped):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    assert torch.all(fused[2].diagonal() == 0)


@pytest.mark.parametrize("rho", RHOS[:2])
def test_fused_gradcheck(rho):
    gen = torch.Generator().manual_seed(4)
    cost = torch.rand(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    a = (torch.rand(5, dtype=torch.float64, generator=gen) + 0.5).requires_grad_()
    b = (torch.rand(4, dtype=torch.float64, generator=gen) + 0.5).requires_grad_()

    def potentials(cost, a, b):
        problem = Problem(cost, a, b * a.sum() / b.sum(), eps=0.4, rho_a=rho[0], rho_b=rho[1])
        kernel = choose_softmin(problem, "auto", 0.0)
        assert isinstance(kernel, KernelDomain)
        plan = Sinkhorn().iterate(problem, torch.zeros(5, dtype=torch.float64), torch.zeros(4, dtype=torch.float64),
                                  3, 0.0, softmin=kernel)
        return plan.f, plan.g

    assert torch.autograd.gradcheck(potentials, (cost, a, b))


def test_used_only_where_the_spread_allows():
    unit = torch.nn.functional.normalize(torch.randn(64, 8, generator=torch.Generator().manual_seed(5)), dim=1)
    cost = -(unit @ unit.T)
    assert spread_allows(Problem(cost, eps=0.1).geometry, 0.1)  # spread <= 2, 2 / 0.1 = 20 <= 40
    assert not spread_allows(Problem(cost, eps=0.01).geometry, 0.01)  # 200 > 40 in float32
    assert spread_allows(Problem(cost.double(), eps=0.01).geometry, 0.01)  # float64 allows up to 500
    assert not spread_allows(Problem(otalign.PointCloud(unit, unit), eps=1.0).geometry, 1.0)


def test_small_eps_falls_back_to_the_log_domain_and_stays_finite():
    unit = torch.nn.functional.normalize(torch.randn(64, 8, generator=torch.Generator().manual_seed(6)), dim=1)
    problem = Problem(-(unit @ unit.T), eps=1e-3)
    auto = solve(problem, max_iter=20, tol=0)
    logdomain = solve(problem, Sinkhorn(kernel="blocked"), max_iter=20, tol=0)
    assert torch.isfinite(auto.f).all() and torch.isfinite(auto.g).all()
    torch.testing.assert_close(auto.f, logdomain.f)


def test_hooks_and_iterates_run_in_the_kernel_domain():
    """One loop: the translation-invariant hook and kept iterates work on the kernel-domain path too, with the same
    values as the log domain."""
    gen = torch.Generator().manual_seed(7)
    cost = torch.rand(6, 5, dtype=torch.float64, generator=gen)
    problem = Problem(cost, eps=0.3, rho_a=0.5, rho_b=0.5)
    for name in ("unbalanced", "sinkhorn"):
        fast = solve(problem, name, max_iter=5, tol=0, keep_iterates=True)
        slow = solve(problem, name, max_iter=5, tol=0, keep_iterates=True, kernel="blocked")
        assert len(fast.iterates) == len(slow.iterates) == 5
        torch.testing.assert_close(fast.f, slow.f, rtol=1e-10, atol=1e-12)
        for (f0, g0), (f1, g1) in zip(fast.iterates, slow.iterates):
            torch.testing.assert_close(f0, f1, rtol=1e-10, atol=1e-12)


def test_known_bounds_choose_the_path_without_reading_the_cost():
    cost = torch.full((4, 4), float("nan"))  # never read: the bounds are given
    geometry = otalign.DenseCost(cost, bounds=(-1.0, 1.0))
    assert geometry.bounds() == (-1.0, 1.0)
    assert spread_allows(geometry, 0.5) and not spread_allows(geometry, 0.01)


def test_repeated_backward_through_one_kernel_accumulates_once_per_pass():
    gen = torch.Generator().manual_seed(8)
    cost = torch.rand(5, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    plan = solve(Problem(cost, eps=0.5), max_iter=3, tol=0)
    loss = plan.f.square().sum()
    first = torch.autograd.grad(loss, cost, retain_graph=True)[0]
    second = torch.autograd.grad(loss, cost)[0]
    torch.testing.assert_close(first, second)
