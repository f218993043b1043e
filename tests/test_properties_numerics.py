"""Property tests (hypothesis) of the numerical guarantees, one per defect class:

1. finite gradients on legal inputs: zero masses (any grad mode, both references, any rho) and targets with
   empty rows (every alignment loss);
2. ``converged=True`` implies both marginal residuals are at most ``tol``: L1 distances in mass units,
   ``|P 1 - a|_1`` for a hard side, ``|P 1 - a exp(-f / rho)|_1`` for a relaxed one, nothing for a free one
   (:attr:`otalign.Plan.marginal_residual`), including 1 x N and N x 1 problems and float32;
3. an infinite objective gives ``+inf`` (never a finite number): ``Plan.value`` of a plan loading a zero mass of a
   relaxed side, ``kl`` of a target asking for a forbidden pair; a plan or value beyond the dtype's range
   raises instead of coming back as inf / NaN, and so do masses whose objective overflows;
4. the KL divergence is invariant to the scale of the target over 1e-300..1e300 (float64), 1e-38..1e38 (float32).

Derandomised, small problems (at most 6 x 6), a few seconds in all.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from otalign import Plan, Problem, losses, solve
from otalign.divergences import kl

pytestmark = [
    pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:implicit differentiation:UserWarning"),
]
INF = math.inf


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def examples(count: int):
    return settings(max_examples=count, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def log_uniform(low: float, high: float):
    return st.floats(math.log(low), math.log(high)).map(math.exp)


RHO = st.one_of(st.just(0.0), st.just(INF), log_uniform(0.1, 10.0))


def masses(gen, size: int, zeros: int, dtype) -> torch.Tensor:
    """Positive masses summing to 1 with ``zeros`` of them (not all) set to 0."""
    mass = torch.rand(size, generator=gen, dtype=torch.float64) + 0.2
    mass[torch.randperm(size, generator=gen)[: min(zeros, size - 1)]] = 0.0
    return (mass / mass.sum()).to(dtype)


@st.composite
def problems(draw, dtypes=(torch.float64,), zeros=True, sizes=(1, 6)):
    n, m = draw(st.integers(*sizes)), draw(st.integers(*sizes))
    dtype = draw(st.sampled_from(dtypes))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    C = (draw(log_uniform(0.1, 10.0)) * torch.rand(n, m, generator=gen, dtype=torch.float64)).to(dtype)
    a = masses(gen, n, draw(st.integers(0, 2)) if zeros else 0, dtype)
    b = masses(gen, m, draw(st.integers(0, 2)) if zeros else 0, dtype)
    return dict(cost=C, a=a, b=b, eps=draw(log_uniform(0.05, 5.0)), rho_a=draw(RHO), rho_b=draw(RHO),
                reference=draw(st.sampled_from(("product", "uniform"))))


# ------------------------------------------------------------------------------------------------ 1. gradients

MODES = [("unroll", 1e-10), ("unroll", 0.0), ("envelope", 1e-10), ("implicit", 1e-10)]


@given(problems(sizes=(1, 5)), st.sampled_from(MODES), st.sampled_from(("sinkhorn", "unbalanced")))
@examples(25)
def test_gradients_with_zero_masses_are_finite_and_zero_on_the_zeros(fields, mode, solver):
    grad, tol = mode
    C, a, b = (fields.pop(k).clone().requires_grad_() for k in ("cost", "a", "b"))
    plan = solve(Problem(C, a, b, **fields), solver, grad=grad, tol=tol, max_iter=2000 if tol else 7)
    weights = torch.randn(plan.matrix.shape, generator=torch.Generator().manual_seed(0), dtype=C.dtype)
    loss = plan.value if grad == "envelope" else (plan.matrix * weights).sum() + plan.value
    assert torch.isfinite(loss)
    loss.backward()
    for name, t in (("C", C), ("a", a), ("b", b)):
        assert t.grad is None or torch.isfinite(t.grad).all(), name
    for t in (a, b):
        if t.grad is not None:
            assert (t.grad[t.detach() == 0] == 0).all()


LOSSES = ("InfoNCE", "GCAInfoNCE", "RINCE", "GCARINCE", "GCAUOT")


@given(st.sampled_from(LOSSES), st.integers(2, 5), st.integers(0, 2**31 - 1), st.lists(st.booleans(), min_size=10,
       max_size=10), log_uniform(0.1, 1.0))
@examples(30)
def test_losses_with_empty_target_rows_have_finite_gradients(name, n, seed, empty, temperature):
    gen = torch.Generator().manual_seed(seed)
    z0, z1 = (torch.randn(n, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    target = torch.rand(2 * n, 2 * n, generator=gen, dtype=torch.float64).fill_diagonal_(0)
    rows = torch.tensor(empty[: 2 * n])
    assume(not rows.all())
    target[rows] = 0.0
    loss = getattr(losses, name)(temperature=temperature)(z0, z1, target=target)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(z0.grad).all() and torch.isfinite(z1.grad).all()


# ------------------------------------------------------------------------------------------------ 2. convergence


def dense_residuals(plan: Plan) -> list[float]:
    """The marginal residuals recomputed from the dense plan in float64, independently of the solver."""
    p = plan.problem
    P = plan.matrix.detach().double()
    out = []
    for marginal, potential, mass, rho in ((P.sum(-1), plan.f, p.a, p.rho_a), (P.sum(-2), plan.g, p.b, p.rho_b)):
        mass, potential = mass.double(), potential.detach().double()
        if rho == 0:
            out.append(0.0)
            continue
        target = mass if math.isinf(rho) else mass * torch.exp(-torch.where(mass > 0, potential, 0.0) / rho)
        out.append(float((marginal - target).abs().sum()))
    return out


@given(problems(dtypes=(torch.float64, torch.float32), zeros=False), st.sampled_from(("sinkhorn", "unbalanced",
       "proximal")), st.sampled_from((1e-3, 1e-5, 1e-7)), st.booleans())
@examples(40)
def test_converged_means_both_marginal_residuals_within_tol(fields, solver, tol, one_row):
    if one_row:  # 1 x N or N x 1: the side of size 1 is trivially exact, the other must be measured
        fields["cost"], fields["a"] = fields["cost"][:1], torch.ones(1, dtype=fields["cost"].dtype)
        if math.isinf(fields["rho_a"]) and math.isinf(fields["rho_b"]):
            fields["b"] = fields["b"] / fields["b"].sum()
    plan = solve(Problem(**fields), solver, tol=tol, max_iter=200 if solver != "proximal" else 10)
    if plan.converged:
        rows, cols = plan.marginal_residual
        assert float(rows) <= tol and float(cols) <= tol
        slack = 64 * torch.finfo(plan.problem.dtype).eps * (1 + float(fields["cost"].abs().max()) / plan.problem.eps)
        for residual in dense_residuals(plan):
            assert residual <= tol + slack * 4, (residual, tol)


# ------------------------------------------------------------------------------------------------ 3. infinity


@given(problems(sizes=(1, 5)), st.integers(0, 2**31 - 1))
@examples(30)
def test_value_is_infinite_exactly_when_a_relaxed_side_loads_a_zero_mass(fields, seed):
    """Any potentials define a plan; its objective is +inf iff a relaxed side puts mass where the mass is 0."""
    problem = Problem(**fields)
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(problem.n, generator=gen, dtype=torch.float64) * 0.1
    g = torch.randn(problem.m, generator=gen, dtype=torch.float64) * 0.1
    plan = Plan(problem, f, g, 0, False)
    rows, cols = plan.marginals
    infinite = any(
        0 < rho < INF and bool(((mass == 0) & (marginal > 0)).any())
        for rho, mass, marginal in ((problem.rho_a, problem.a, rows), (problem.rho_b, problem.b, cols))
    )
    value = plan.value.item()
    assert (value == INF) if infinite else math.isfinite(value)
    solved = solve(problem, max_iter=20, tol=0)
    assert math.isfinite(solved.value.item())
    if problem.rho_a > 0:  # zero masses carry exactly no mass (a free side ignores its masses)
        assert (solved.marginals[0][problem.a == 0] == 0).all()
    if problem.rho_b > 0:
        assert (solved.marginals[1][problem.b == 0] == 0).all()


@given(st.integers(2, 5), st.integers(0, 2**31 - 1), st.floats(0.0, 0.5))
@examples(25)
def test_kl_is_infinite_exactly_when_the_target_needs_a_forbidden_pair(n, seed, density):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=gen) < density
    mask[torch.arange(n), torch.randperm(n, generator=gen)] = False  # a feasible permutation stays allowed
    plan = solve(Problem(torch.rand(n, n, generator=gen, dtype=torch.float64), eps=0.3, mask=mask), max_iter=10, tol=0)
    target = torch.rand(n, n, generator=gen, dtype=torch.float64) * (torch.rand(n, n, generator=gen) < 0.6)
    per_anchor = kl(plan, target)
    needs_forbidden = ((target > 0) & mask).any(-1)
    assert (per_anchor[needs_forbidden] == INF).all()
    assert torch.isfinite(per_anchor[~needs_forbidden]).all()


@given(st.integers(1, 4), st.integers(1, 4), log_uniform(1e-3, 0.1), st.sampled_from((0.0, 1e-4, 1e-2, 1.0)),
       st.sampled_from((0.0, 1e-4, 1e-2, INF)), log_uniform(0.5, 5.0), st.sampled_from(("product", "uniform")))
@examples(25)
def test_overflowing_plans_raise_and_others_are_finite(n, m, eps, rho_a, rho_b, depth, reference):
    """Negative costs with free or weakly relaxed sides in float32: the optimum may be beyond the dtype; then a
    FloatingPointError, never an inf matrix or a NaN value."""
    C = -depth * torch.rand(n, m, generator=torch.Generator().manual_seed(n * 7 + m))
    try:
        plan = solve(Problem(C, eps=eps, rho_a=rho_a, rho_b=rho_b, reference=reference), max_iter=60)
        matrix, value = plan.matrix, plan.value
    except FloatingPointError as error:
        assert "overflow" in str(error) or "beyond the range" in str(error)
        return
    assert torch.isfinite(matrix).all() and torch.isfinite(value)


@given(log_uniform(1.0, 1e38), st.sampled_from((INF, 1.0)), st.sampled_from(("product", "uniform")))
@examples(30)
def test_large_masses_are_rejected_or_give_a_finite_value(scale, rho, reference):
    a, b = torch.full((3,), scale / 3), torch.full((4,), scale / 4)
    try:
        problem = Problem(torch.rand(3, 4), a, b, eps=0.1, rho_a=rho, rho_b=rho, reference=reference)
    except ValueError as error:
        assert str(error).startswith(("a, b:", "a:", "b:"))
        return
    plan = solve(problem, max_iter=50, tol=0)
    assert torch.isfinite(plan.value) and torch.isfinite(plan.matrix).all()


# ------------------------------------------------------------------------------------------------ 4. KL scale


@given(st.sampled_from((torch.float64, torch.float32)), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1),
       st.integers(2, 6))
@examples(40)
def test_kl_is_invariant_to_the_target_scale(dtype, position, seed, n):
    low, high = (1e-300, 1e300) if dtype == torch.float64 else (1e-38, 1e38)
    scale = math.exp(math.log(low) + position * (math.log(high) - math.log(low)))
    gen = torch.Generator().manual_seed(seed)
    plan = solve(Problem(torch.rand(n, n, generator=gen, dtype=dtype), eps=0.2), max_iter=10, tol=0)
    target = torch.rand(n, n, generator=gen, dtype=dtype) * 0.5 + 0.5
    target[0, : n // 2] = 0.0
    reference = kl(plan, target)
    scaled = kl(plan, target * scale)
    rtol = 1e-4 if dtype == torch.float32 else 1e-10  # the scaled target is rounded (subnormal near 1e-38)
    torch.testing.assert_close(scaled, reference, rtol=rtol, atol=0)
    power = 2.0 ** round(math.log2(scale))
    if torch.isfinite(torch.tensor(power, dtype=dtype)) and power * 0.5 >= torch.finfo(dtype).tiny:
        assert torch.equal(kl(plan, target * power), reference)  # exact for power-of-two scales
