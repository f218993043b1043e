"""``otalign.Problem``: defaults, damping exponents, the half-steps against the docs/maths.md formulas written out
densely, plan blocks, the mass penalty and dual terms against plain formulas, masks and batching."""

from __future__ import annotations

import math

import pytest
import torch

from otalign import DenseCost, Plan, PointCloud, Problem, solve
from otalign.problem import dual_mass_term, marginal_penalty, safe_log
from otalign.halfstep import col_step, log_row_marginal, row_step


def test_defaults_are_uniform_masses_and_hard_marginals(data):
    problem = Problem(data.C)
    torch.testing.assert_close(problem.a, torch.full((8,), 1 / 8, dtype=torch.float64))
    torch.testing.assert_close(problem.b, torch.full((6,), 1 / 6, dtype=torch.float64))
    assert problem.is_balanced and problem.reference == "product"
    assert (problem.n, problem.m, problem.batch_shape) == (8, 6, ())
    assert isinstance(problem.geometry, DenseCost)
    torch.testing.assert_close(problem.cost, data.C, rtol=0, atol=0)


@pytest.mark.parametrize(
    "rho, expected", [(math.inf, 1.0), (0.0, 0.0), (0.3, 0.3 / (0.3 + 0.1)), (5.0, 5.0 / 5.1)]
)
def test_damping_exponent(data, rho, expected):
    problem = Problem(data.C, eps=0.1, rho_a=rho, rho_b=math.inf if rho != math.inf else 1.0)
    assert problem.lambda_a == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("rho", [(math.inf, math.inf), (0.4, 2.0)])
def test_half_steps_match_dense_formulas(data, reference, rho):
    """``f_i = la (eps log a_i - eps LSE_j[(g_j - C_ij)/eps])`` (R = 1); with R = a b^T the reference enters the
    LSE as ``+ log b_j`` and the ``eps log a_i`` term disappears."""
    eps = 0.15
    problem = Problem(data.C, data.a, data.b, eps=eps, rho_a=rho[0], rho_b=rho[1], reference=reference)
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(8, generator=gen, dtype=torch.float64)
    g = torch.randn(6, generator=gen, dtype=torch.float64)
    la = 1.0 if math.isinf(rho[0]) else rho[0] / (rho[0] + eps)
    lb = 1.0 if math.isinf(rho[1]) else rho[1] / (rho[1] + eps)
    if reference == "product":
        f_ref = -la * eps * torch.logsumexp((g[None, :] - data.C) / eps + data.b.log()[None, :], dim=1)
        g_ref = -lb * eps * torch.logsumexp((f[:, None] - data.C) / eps + data.a.log()[:, None], dim=0)
    else:
        f_ref = la * (eps * data.a.log() - eps * torch.logsumexp((g[None, :] - data.C) / eps, dim=1))
        g_ref = lb * (eps * data.b.log() - eps * torch.logsumexp((f[:, None] - data.C) / eps, dim=0))
    torch.testing.assert_close(row_step(problem, g)[0], f_ref, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(col_step(problem, f)[0], g_ref, rtol=1e-13, atol=1e-14)


def test_free_side_potential_is_zero(data):
    problem = Problem(data.C, data.a, data.b, rho_b=0.0)
    g, lse = col_step(problem, torch.ones(8, dtype=torch.float64))
    assert torch.equal(g, torch.zeros(6, dtype=torch.float64)) and lse is None


def test_row_step_makes_rows_exact(data):
    """After ``f = row_step(problem, g)`` with a hard row side, ``P 1 = a`` (read from ``log_row_marginal``)."""
    problem = Problem(data.C, data.a, data.b, eps=0.1)
    g = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f, _ = row_step(problem, g)
    _, lse = row_step(problem, g)
    torch.testing.assert_close(log_row_marginal(problem, f, lse).exp(), data.a, rtol=1e-13, atol=0)
    P = problem.log_plan_block(f, g, 0, 8).exp()
    torch.testing.assert_close(P.sum(1), data.a, rtol=1e-13, atol=0)


def test_log_plan_block_is_a_slice_of_the_whole(data):
    problem = Problem(data.C, data.a, data.b, eps=0.2, reference="product")
    gen = torch.Generator().manual_seed(2)
    f = torch.randn(8, generator=gen, dtype=torch.float64)
    g = torch.randn(6, generator=gen, dtype=torch.float64)
    whole = (f[:, None] + g[None, :] - data.C) / 0.2 + data.a.log()[:, None] + data.b.log()[None, :]
    torch.testing.assert_close(problem.log_plan_block(f, g, 2, 5), whole[2:5], rtol=1e-14, atol=1e-14)


def test_with_eps_keeps_everything_else(data):
    problem = Problem(data.C, data.a, data.b, eps=0.1, rho_a=0.5, reference="uniform")
    other = problem.with_eps(0.02)
    assert other.eps == 0.02 and problem.eps == 0.1
    assert (other.rho_a, other.rho_b, other.reference) == (0.5, math.inf, "uniform")
    assert other.a is problem.a and other.geometry is problem.geometry


def test_detach_cuts_the_graph(data):
    C = data.C.clone().requires_grad_()
    problem = Problem(C, data.a, data.b).detach()
    assert not problem.cost.requires_grad


def test_marginal_penalty_is_generalised_kl(data):
    gen = torch.Generator().manual_seed(3)
    marginal = torch.rand(8, generator=gen, dtype=torch.float64)
    marginal[2] = 0.0  # 0 log 0 = 0
    expected = 0.7 * sum(
        (p * math.log(p / q) if p > 0 else 0.0) - p + q for p, q in zip(marginal.tolist(), data.a.tolist())
    )
    assert marginal_penalty(marginal, data.a, 0.7).item() == pytest.approx(expected, rel=1e-13)
    assert marginal_penalty(marginal, data.a, math.inf).item() == 0.0
    assert marginal_penalty(marginal, data.a, 0.0).item() == 0.0


def test_dual_mass_term(data):
    gen = torch.Generator().manual_seed(4)
    f = torch.randn(8, generator=gen, dtype=torch.float64)
    expected = sum(a * 0.7 * (1 - math.exp(-x / 0.7)) for a, x in zip(data.a.tolist(), f.tolist()))
    assert dual_mass_term(f, data.a, 0.7).item() == pytest.approx(expected, rel=1e-13)
    assert dual_mass_term(f, data.a, math.inf).item() == pytest.approx((data.a * f).sum().item(), rel=1e-14)
    assert dual_mass_term(f, data.a, 0.0).item() == 0.0


def test_total_reference_mass(data):
    assert Problem(data.C, 2 * data.a, 2 * data.b).total_reference_mass().item() == pytest.approx(4.0)
    assert Problem(data.C, reference="uniform").total_reference_mass().item() == 48.0


def test_mask_sets_forbidden_costs_to_inf(data):
    mask = torch.zeros(8, 6, dtype=torch.bool)
    mask[0, 1] = mask[3, 2] = True
    problem = Problem(data.C, mask=mask)
    assert torch.isinf(problem.cost[mask]).all() and torch.isfinite(problem.cost[~mask]).all()


def test_masks_of_a_dense_cost_and_of_the_problem_are_combined(data):
    first, second = torch.zeros(8, 6, dtype=torch.bool), torch.zeros(8, 6, dtype=torch.bool)
    first[0, 1], second[3, 2] = True, True
    problem = Problem(DenseCost(data.C, first), mask=second)
    torch.testing.assert_close(problem.geometry.mask, first | second, rtol=0, atol=0)
    assert torch.isinf(problem.cost[first | second]).all() and torch.isfinite(problem.cost[~(first | second)]).all()


@pytest.mark.parametrize("lead", [(), (3,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_validation_keeps_the_rows_minima_it_reads_the_bounds_from(lead, dtype):
    """The bounds of an unmasked cost come from its rows' minima (kept for the solvers that need them, also in the
    detached geometry a gradient-free solve runs on); NaN in one row shows in that row's minimum and in the bounds,
    which the validation refuses."""
    gen = torch.Generator().manual_seed(4)
    cost = (torch.randn(lead + (9, 7), generator=gen, dtype=torch.float64) * 3).to(dtype)
    problem = Problem(cost)
    assert problem.geometry.bounds() == (cost.min().item(), cost.max().item())
    assert torch.equal(problem.geometry.row_minima(), cost.amin(-1))
    assert problem.detach().geometry.row_minima() is problem.geometry.row_minima()
    broken = cost.clone()
    broken[..., 4, 2] = math.nan
    geometry = DenseCost(broken)
    low, high = geometry.measure_bounds()
    assert math.isnan(low) and math.isnan(high)
    assert torch.isnan(geometry.row_minima()[..., 4]).all() and not torch.isnan(geometry.row_minima()[..., 3]).any()
    with pytest.raises(ValueError, match="^cost:.*NaN"):
        Problem(broken)


@pytest.mark.parametrize("masked", [False, True])
def test_validation_records_the_range_of_the_allowed_costs(data, masked):
    cost = data.C.clone()
    mask = None
    if masked:
        mask = torch.zeros(8, 6, dtype=torch.bool)
        mask[2, 3] = True
        cost[2, 3] = 1e300  # a forbidden pair's value must not count
    allowed = cost if mask is None else cost[~mask]
    problem = Problem(cost, mask=mask)
    assert problem.geometry.bounds() == (min(allowed.min().item(), 0.0 if masked else math.inf),
                                            max(allowed.max().item(), 0.0 if masked else -math.inf))


def test_batched_masses_broadcast(batch_data):
    problem = Problem(batch_data.C, batch_data.a[0], batch_data.b)
    assert problem.batch_shape == (3,) and problem.a.shape == (3, 7)
    torch.testing.assert_close(problem.a[2], batch_data.a[0], rtol=0, atol=0)


def test_pointcloud_problem_materialises_the_cost(data):
    problem = Problem(PointCloud(data.x, data.y, "half_sqeuclidean"))
    torch.testing.assert_close(problem.cost, torch.cdist(data.x, data.y) ** 2 / 2, rtol=1e-12, atol=1e-12)
    assert problem.dtype == torch.float64


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16])
def test_low_precision_is_promoted_to_float32(data, low):
    # one side relaxed: half-precision masses normalised in half precision differ in total by ~1e-4, which the
    # balanced equal-mass check (relative 1e-5) rejects
    problem = Problem(data.C.to(low), data.a.to(low), data.b.to(low), eps=0.1, rho_b=1.0)
    assert problem.dtype == torch.float32 and problem.a.dtype == torch.float32 and problem.b.dtype == torch.float32


# ------------------------------------------------------------------------------------------------ zero masses


def _zero_mass_case():
    gen = torch.Generator().manual_seed(4)
    C = torch.rand(4, 3, generator=gen, dtype=torch.float64)
    a = torch.tensor([0.0, 0.3, 0.3, 0.4], dtype=torch.float64)
    b = torch.full((3,), 1 / 3, dtype=torch.float64)
    W = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    return C, a, b, W


def _solve_and_differentiate(C, a, b, W, reference, rho, grad, tol):
    C, a, b = (t.clone().requires_grad_() for t in (C, a, b))
    plan = solve(Problem(C, a, b, eps=0.5, rho_a=rho, rho_b=rho, reference=reference),
                 max_iter=3000 if tol else 15, tol=tol, grad=grad)
    loss = plan.value if grad == "envelope" else (plan.matrix * W).sum() + plan.value
    loss.backward()
    return plan, C.grad, a.grad, b.grad


@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("rho", [math.inf, 1.0])
@pytest.mark.parametrize("grad, tol", [("unroll", 1e-12), ("unroll", 0.0), ("envelope", 1e-12), ("implicit", 1e-12)])
def test_zero_mass_gradient_is_zero_and_the_rest_is_the_problem_without_it(reference, rho, grad, tol):
    """a_0 = 0 with requires_grad: its gradient is 0 (the documented convention; it was NaN in unroll, envelope
    and the kernel-domain path, tol=0) and every other gradient equals that of the problem with row 0 removed
    (implicit gave NaN for all of them: a singular system)."""
    C, a, b, W = _zero_mass_case()
    plan, dC, da, db = _solve_and_differentiate(C, a, b, W, reference, rho, grad, tol)
    _, dC2, da2, db2 = _solve_and_differentiate(C[1:], a[1:], b, W[1:], reference, rho, grad, tol)
    for t in (dC, da, db):
        assert torch.isfinite(t).all()
    assert float(da[0]) == 0.0
    assert float(plan.matrix.detach()[0].abs().max()) == 0.0
    torch.testing.assert_close(da[1:], da2, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(db, db2, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(dC[1:], dC2, rtol=1e-7, atol=1e-9)
    assert float(dC[0].abs().max()) <= 1e-250  # the soft-min's exponent floor, e^-700


def test_zero_mass_rows_carry_no_mass_under_weak_relaxation():
    """reference="uniform", rho/(rho + eps) = 0.005: with log 0 floored at -1e4 the zero-mass row got 2.4e-3 of
    mass and a finite value although such a plan's objective is +inf. Now the row is exactly empty and the value
    that of the problem without the row, plus eps * m (the reference R = 1 on the empty row)."""
    gen = torch.Generator().manual_seed(1)
    C = torch.rand(3, 4, generator=gen, dtype=torch.float64)
    a = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    eps, rho = 0.1, 5e-4
    plan = solve(Problem(C, a, eps=eps, rho_a=rho, reference="uniform"))
    assert float(plan.matrix[0].abs().max()) == 0.0
    reduced = solve(Problem(C[1:], a[1:], eps=eps, rho_a=rho, reference="uniform"))
    torch.testing.assert_close(plan.value, reduced.value + eps * C.shape[1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(plan.matrix[1:], reduced.matrix, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_value_is_infinite_when_a_relaxed_side_puts_mass_on_a_zero_mass(reference):
    """Any potentials define a plan; if that plan has mass on a row whose mass is 0 under a KL-relaxed row side,
    rho KL(P1 | a) is +inf, and so is the value (not a large finite number)."""
    C = torch.rand(3, 4, dtype=torch.float64)
    a = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    problem = Problem(C, a, eps=0.1, rho_a=1.0, reference="uniform")
    plan = Plan(problem, torch.zeros(3, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), 0, False)
    assert float(plan.matrix[0].sum()) > 0
    assert plan.value.item() == math.inf
    solved = solve(Problem(C, a, eps=0.1, rho_a=1.0, reference=reference))
    assert math.isfinite(solved.value.item())


def test_safe_log_is_minus_inf_with_a_zero_gradient_at_zero():
    mass = torch.tensor([0.0, 0.5], dtype=torch.float64, requires_grad=True)
    out = safe_log(mass)
    assert out[0].item() == -math.inf and out[1].item() == math.log(0.5)
    out[1].backward()
    assert mass.grad.tolist() == [0.0, 2.0]
