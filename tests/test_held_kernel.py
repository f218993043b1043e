"""A plan's matrix formed from the kernel its solver held (``otalign.softmin.held``) against the exponential form.

Both are evaluations of ``P_ij = R_ij exp((f_i + g_j - C_ij) / eps)`` for the same float potentials; each is compared
with that expression evaluated in float64 from the same numbers. Both err by the rounding of exponents of size
``(|f| + |g| + |C|) / eps``: the L1 distance of either stays below 4 unit round-offs times that size times the plan's
mass."""

from __future__ import annotations

import pytest
import torch

import otalign
from otalign import Problem
from otalign.plan import Plan
from otalign.softmin import AbsorbedKernel, KernelDomain
from otalign.solvers import Sinkhorn


def cost(n: int, m: int, dtype: torch.dtype, seed: int = 0, batch: tuple = ()) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch + (n, m), generator=gen, dtype=torch.float64).to(dtype)


def float64_plan(plan: Plan) -> torch.Tensor:
    p = plan.problem
    logits = (plan.f.double().unsqueeze(-1) + plan.g.double().unsqueeze(-2) - p.cost.double()) / p.eps
    if p.reference == "product":
        logits = logits + p.log_a.double().unsqueeze(-1) + p.log_b.double().unsqueeze(-2)
    return logits.exp()


def exponential_form(plan: Plan) -> torch.Tensor:
    return plan.problem.log_plan_block(plan.f, plan.g, 0, plan.problem.n).exp_()


CASES = [  # (eps, soft-min the solve picks): spread 1
    (0.5, KernelDomain),
    (0.001, AbsorbedKernel),  # spread / eps = 1000: beyond the kernel domain in both dtypes
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps, kind", CASES)
@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_matrix_from_the_held_kernel_is_the_plan_up_to_rounding(dtype, eps, kind, reference, batch):
    C = cost(23, 17, dtype, batch=batch)
    problem = Problem(C, eps=eps, reference=reference, rho_b=2.0)
    plan = otalign.solve(problem, "sinkhorn", max_iter=15, tol=0, grad="detach")
    assert plan.kernel is not None and plan.kernel.valid() and isinstance(plan.kernel.owner, kind)
    direct = exponential_form(plan)
    got = plan.matrix
    assert not plan.kernel.valid()  # the first matrix took the kernel's memory
    reference_plan = float64_plan(plan)
    size = 1 + float((plan.f.abs().amax() + plan.g.abs().amax() + C.abs().amax()).double()) / eps
    bound = 4 * torch.finfo(dtype).eps / 2 * size * float(reference_plan.sum())
    err_kernel = float((got.double() - reference_plan).abs().sum())
    err_direct = float((direct.double() - reference_plan).abs().sum())
    assert err_direct <= bound and err_kernel <= bound, (err_kernel, err_direct, bound)
    torch.testing.assert_close(plan.matrix, direct, rtol=0, atol=0)  # later calls: the exponential form


@pytest.mark.parametrize("eps", [0.5, 0.02])
def test_the_measured_residual_is_that_of_the_matrix_the_user_gets(eps):
    C = cost(30, 20, torch.float32, seed=1)
    plan = otalign.solve(Problem(C, eps=eps), Sinkhorn(), max_iter=2000, tol=1e-4, grad="detach")
    assert plan.kernel is not None and plan.kernel.valid()
    residual = plan.measured_residual()
    P = plan.matrix.double()
    p = plan.problem
    expected = torch.maximum((P.sum(-1) - p.a.double()).abs().sum(), (P.sum(-2) - p.b.double()).abs().sum())
    torch.testing.assert_close(residual, expected, rtol=1e-12, atol=0)


def test_plans_that_autograd_may_differentiate_keep_the_exponential_form():
    C = cost(12, 9, torch.float64).requires_grad_()
    unrolled = otalign.solve(Problem(C, eps=0.5), "sinkhorn", max_iter=5, tol=0)
    assert unrolled.kernel is None and unrolled.matrix.requires_grad
    implicit = otalign.solve(Problem(C, eps=0.5), "sinkhorn", max_iter=50, tol=0, grad="implicit")
    assert implicit.kernel is not None
    P = implicit.matrix
    assert P.requires_grad and implicit.kernel.valid()  # differentiable: formed by the exponential, kernel left
    P.sum().backward()
    assert C.grad is not None
    plain = otalign.solve(Problem(C.detach(), eps=0.5), "sinkhorn", max_iter=5, tol=0)
    assert plain.kernel is None  # an unrolled solve records autograd: its matrix and log_matrix agree bit for bit


@pytest.mark.parametrize("kind", [KernelDomain, AbsorbedKernel])
def test_a_soft_min_whose_kernel_was_taken_rebuilds_it(kind):
    """After a plan took the kernel's memory, the soft-min's next half-step builds a new kernel (same results)."""
    C = cost(15, 11, torch.float64, seed=2)
    problem = Problem(C, eps=0.5)
    softmin = kind(problem.geometry, 0.5)
    h = torch.randn(11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = softmin(h, 1)
        held = softmin.held()
        taken = held.take(torch.ones(15, dtype=torch.float64), torch.ones(11, dtype=torch.float64), [(0, 15)])
        assert taken is not None and not held.valid() and held.take(taken[0], taken[0, :11], [(0, 15)]) is None
        taken.fill_(float("nan"))  # the caller owns it now
        torch.testing.assert_close(softmin(h, 1), before, rtol=1e-12, atol=0)


def test_a_point_cloud_plan_holds_no_kernel():
    """The user of a point cloud chose not to hold n x m numbers: its plan keeps none after the solve."""
    gen = torch.Generator().manual_seed(3)
    cloud = otalign.PointCloud(torch.randn(20, 2, generator=gen), torch.randn(15, 2, generator=gen))
    plan = otalign.solve(Problem(cloud, eps=0.01), "sinkhorn", max_iter=10, tol=0, grad="detach")
    assert plan.kernel is None and torch.isfinite(plan.matrix).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps, kind", CASES)
@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_a_scaling_loop_hands_its_last_scalings_to_the_plan(dtype, eps, kind, reference, batch):
    """A balanced fixed-count solve ends in a scaling loop whose last ``u``, ``v`` are the plan's diagonal scalings:
    the matrix formed from them is the plan up to the same rounding as the exponential form, and they are used only
    for the very potentials they belong to (a clone, or a potential changed in place, recomputes them)."""
    C = cost(23, 17, dtype, batch=batch)
    problem = Problem(C, eps=eps, reference=reference)
    plan = otalign.solve(problem, "sinkhorn", max_iter=15, tol=0, grad="detach")
    assert isinstance(plan.kernel.owner, kind)
    assert plan.kernel.scalings_of(plan.f, plan.g) is not None  # grad="detach" re-attached detached aliases
    assert plan.kernel.scalings_of(plan.f.clone(), plan.g) is None
    direct = exponential_form(plan)
    reference_plan = float64_plan(plan)
    got = plan.matrix
    size = 1 + float((plan.f.abs().amax() + plan.g.abs().amax() + C.abs().amax()).double()) / eps
    bound = 4 * torch.finfo(dtype).eps / 2 * size * float(reference_plan.sum())
    err_kernel = float((got.double() - reference_plan).abs().sum())
    err_direct = float((direct.double() - reference_plan).abs().sum())
    assert err_direct <= bound and err_kernel <= bound, (err_kernel, err_direct, bound)

    again = otalign.solve(problem, "sinkhorn", max_iter=15, tol=0, grad="detach")
    held = again.kernel
    again.f.add_(0.0)  # an in-place write, even of nothing, bumps the version: the scalings are not trusted
    assert held.scalings_of(again.f, again.g) is None
    assert float((again.matrix.double() - float64_plan(again)).abs().sum()) <= bound  # formed from recomputed ones
