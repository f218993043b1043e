"""Property-based tests (hypothesis) of the native solvers over random small problems.

Drawn: sizes ``n, m`` in 1..12, single or batched (B in 1..3), dtypes (float64, float32, and float16 / bfloat16
inputs, which must be solved in float32), ``eps`` log-uniform in [1e-3, 10], ``rho`` per side in
{0, [1e-2, 1e2], inf}, both references, and the solvers "sinkhorn", "unbalanced" and "proximal". Properties:

* everything a plan reports is finite, the plan is non-negative, low precision comes back as float32;
* a hard column side is exact after the final column step, a hard row side meets the tolerance when converged;
* ``Plan.value`` equals the generalised-KL primal recomputed from the plan matrix (``conftest.primal_objective``);
* a batched solve equals the loop of single solves;
* the translation-invariant solver converges to the plain Sinkhorn plan;
* ``grad="implicit"`` gives finite gradients;
* scaling ``C``, ``eps`` and ``rho`` by ``s`` leaves the plan unchanged and scales the potentials by ``s``;
* permuting the rows of ``C`` and ``a`` (and the columns of ``C`` and ``b``) permutes the plan.

Comparisons against POT and geomloss are in tests/solvers/; these tests only use closed-form identities and the
independent primal written in conftest.py. Runs are derandomised (the same examples every run) so that a failure
is reproducible; each test draws 50 to 120 examples of at most 12 x 12 (a few seconds in all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from otalign import Plan, Problem, solve

pytestmark = [
    pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning"),  # convergence is asserted where it matters
    pytest.mark.filterwarnings("ignore:implicit differentiation:UserWarning"),
]

SOLVERS = ("sinkhorn", "unbalanced", "proximal")
LOW_PRECISION = (torch.float16, torch.bfloat16)
INF = math.inf


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread. On a shared CPU, OpenMP's waiting threads made these tests about ten
    times slower after another test had used the thread pool (measured: 11 s instead of 0.8 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def examples(count: int):
    """hypothesis settings: ``count`` examples, no deadline (a loaded CPU), reproducible, no example database.
    The only fixture used with ``@given`` is conftest's stateless ``primal``, so function scope is harmless."""
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def log_uniform(low: float, high: float):
    return st.floats(math.log(low), math.log(high)).map(math.exp)


RHO = st.one_of(st.just(0.0), st.just(INF), log_uniform(1e-2, 1e2))


@dataclass
class Case:
    """One drawn problem: cost ``C (..., n, m)`` and masses (``None`` = the default uniform masses) in the input
    dtype, and the parameters. ``C`` is ``|x - y|^2`` of random points, scaled so that its largest entry is ``span``."""

    C: torch.Tensor
    a: Optional[torch.Tensor]
    b: Optional[torch.Tensor]
    eps: float
    rho_a: float
    rho_b: float
    reference: str
    solver: str

    def problem(self, **changes) -> Problem:
        fields = dict(cost=self.C, a=self.a, b=self.b, eps=self.eps, rho_a=self.rho_a, rho_b=self.rho_b,
                      reference=self.reference)
        fields.update(changes)
        return Problem(**fields)

    @property
    def batch(self) -> Optional[int]:
        return self.C.shape[0] if self.C.dim() == 3 else None


@st.composite
def cases(draw, dtypes=(torch.float64, torch.float32, *LOW_PRECISION), solvers=SOLVERS, eps=(1e-3, 10.0),
          rhos=RHO, batched=st.one_of(st.none(), st.integers(1, 3)), masses=st.booleans()) -> Case:
    n, m = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    batch = draw(batched)
    dtype = draw(st.sampled_from(dtypes))
    rho_a, rho_b = draw(rhos), draw(rhos)
    seed = draw(st.integers(0, 2**31 - 1))
    span = draw(log_uniform(1e-2, 1e2))
    gen = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    x = torch.randn(lead + (n, 3), generator=gen, dtype=torch.float64)
    y = torch.randn(lead + (m, 3), generator=gen, dtype=torch.float64)
    C = torch.cdist(x, y) ** 2
    C = span * C / C.amax((-1, -2), keepdim=True).clamp_min(1e-12)
    a = b = None
    if draw(masses):
        # masses in float32 at most: half-precision masses normalised in half precision miss the balanced check
        mass_dtype = torch.float32 if dtype in LOW_PRECISION else dtype
        a = torch.rand(lead + (n,), generator=gen, dtype=torch.float64) + 0.2
        b = torch.rand(lead + (m,), generator=gen, dtype=torch.float64) + 0.2
        total_a = draw(log_uniform(0.1, 10.0))
        total_b = total_a if math.isinf(rho_a) and math.isinf(rho_b) else draw(log_uniform(0.1, 10.0))
        a = (total_a * a / a.sum(-1, keepdim=True)).to(mass_dtype)
        b = (total_b * b / b.sum(-1, keepdim=True)).to(mass_dtype)
    return Case(C.to(dtype), a, b, draw(log_uniform(*eps)), rho_a, rho_b, draw(st.sampled_from(("product", "uniform"))),
                draw(st.sampled_from(solvers)))


def tolerance(dtype: torch.dtype) -> float:
    """The stopping tolerance used for ``dtype`` (float32 cannot meet 1e-9)."""
    return 1e-5 if dtype == torch.float32 else 1e-9


def run(case: Case, problem: Optional[Problem] = None, **kwargs) -> Plan:
    """Solve with the dtype's tolerance; "proximal" counts outer steps (10 sweeps each), so it gets fewer."""
    problem = case.problem() if problem is None else problem
    kwargs.setdefault("max_iter", 15 if case.solver == "proximal" else 300)
    kwargs.setdefault("tol", tolerance(problem.dtype))
    return solve(problem, case.solver, **kwargs)


def log_rounding(plan: Plan) -> float:
    """Absolute rounding error expected in ``log P = (f + g - C) / eps + log R``: a few units of roundoff times the
    size of the logits, ``L = (max |f| + max |g| + max |C|) / eps``. A marginal is then accurate to that relative
    error (float32 at eps = 1e-3 on a cost of span 100: L ~ 1e5, so about 1e-2; float64: about 1e-10)."""
    p = plan.problem
    logits = (plan.f.abs().max() + plan.g.abs().max() + p.cost.abs().max()).item() / p.eps
    return 16 * torch.finfo(p.dtype).eps * (1 + logits)


def each(case_batch: Optional[int]):
    """Indices of the batch elements (``None`` for a single problem)."""
    return [None] if case_batch is None else list(range(case_batch))


def pick(t: torch.Tensor, i: Optional[int]) -> torch.Tensor:
    return t if i is None else t[i]


# ------------------------------------------------------------------------------------------------ finiteness


@given(cases())
@examples(120)
def test_plan_is_finite_non_negative_and_feasible(case):
    plan = run(case)
    problem = plan.problem
    note(f"{problem!r}, solver={case.solver}, iterations={plan.iterations}, converged={plan.converged}")
    expected_dtype = torch.float32 if case.C.dtype in LOW_PRECISION else case.C.dtype
    P = plan.matrix
    for name, t in (("f", plan.f), ("g", plan.g), ("matrix", P), ("value", plan.value)):
        assert t.dtype == expected_dtype, name
        assert torch.isfinite(t).all(), name
    assert (P >= 0).all()
    rounding = log_rounding(plan) * (problem.a.sum(-1) + problem.b.sum(-1))
    rows, cols = plan.marginal_error
    if math.isinf(problem.rho_b):  # the last half-step is a column projection: exact up to rounding
        assert (cols <= rounding).all(), (cols, rounding)
    if math.isinf(problem.rho_a) and plan.converged and case.solver != "proximal":
        # the solver stopped on the L1 row error; proximal stops on the plan's change between outer steps instead
        assert (rows <= tolerance(expected_dtype) + rounding).all(), (rows, rounding)


# ------------------------------------------------------------------------------------------------ the objective


@given(case=cases(dtypes=(torch.float64, torch.float32)))
@examples(80)
def test_value_is_the_primal_of_the_plan(case, primal):
    """``Plan.value`` equals ``<C,P> + eps KL(P|R) + rho_a KL(P1|a) + rho_b KL(P^T 1|b)`` recomputed in float64 from
    the plan matrix, for converged and unconverged plans alike (the identity holds for any potentials)."""
    plan = run(case, max_iter=25)
    problem = plan.problem  # "proximal" returns the problem of its last outer step (eps / steps)
    for i in each(case.batch):
        P = pick(plan.matrix, i).double()
        C, a, b = (pick(t, i).double() for t in (problem.cost, problem.a, problem.b))
        expected = primal(P, C, a, b, problem.eps, problem.rho_a, problem.rho_b, problem.reference)
        value = pick(plan.value, i).double()
        # Rounding: log P = (f + g - C)/eps + log R carries an absolute error of about u L (u the unit roundoff,
        # L = max |f + g - C| / eps), i.e. P a relative one; the value is a sum of terms of size `scale` that
        # cancel, each perturbed that much.
        f, g = pick(plan.f, i).double(), pick(plan.g, i).double()
        scale = 1 + (f.abs() * P.sum(1)).sum() + (g.abs() * P.sum(0)).sum() + (C * P).sum() + expected.abs()
        scale = scale + problem.eps * (P.sum() + (a.sum() * b.sum() if problem.reference == "product" else P.numel()))
        logits = (f.abs().max() + g.abs().max() + C.max()) / problem.eps
        tolerance = 64 * torch.finfo(problem.dtype).eps * scale * (1 + logits)
        assert abs(value - expected) <= tolerance, (value, expected, tolerance)


# ------------------------------------------------------------------------------------------------ batching


@given(cases(dtypes=(torch.float64,), batched=st.integers(1, 3)), st.integers(1, 12))
@examples(60)
def test_batched_equals_looped(case, iterations):
    """A fixed number of iterations (``tol=0``) on ``(B, n, m)`` equals the same iterations on each problem."""
    batched = run(case, tol=0, max_iter=iterations)
    for i in range(case.batch):
        single_problem = case.problem(
            cost=case.C[i], a=None if case.a is None else case.a[i], b=None if case.b is None else case.b[i]
        )
        single = run(case, single_problem, tol=0, max_iter=iterations)
        scale = 1 + single.f.abs().max() + single.g.abs().max()
        torch.testing.assert_close(batched.f[i], single.f, rtol=0, atol=1e-12 * scale)
        torch.testing.assert_close(batched.g[i], single.g, rtol=0, atol=1e-12 * scale)
        torch.testing.assert_close(batched.matrix[i], single.matrix, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(batched.value[i], single.value, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------ solvers agree


@given(
    cases(dtypes=(torch.float64,), solvers=("unbalanced",), eps=(0.05, 10.0)),
    log_uniform(1e-2, 30.0),
    log_uniform(1e-2, 30.0),
    log_uniform(0.1, 10.0),
)
@examples(50)
def test_translation_invariant_solver_reaches_the_sinkhorn_plan(case, ratio_a, ratio_b, spread):
    """Both solvers have the same fixed point. Plain Sinkhorn must converge within the iteration budget: the rows
    are relaxed with ``rho_a = ratio_a * eps`` (the damping ``rho / (rho + eps)`` stays below 30/31), the columns
    are free, hard or relaxed the same way, and the cost spans ``spread * eps``."""
    rho_b = case.rho_b if case.rho_b in (0.0, INF) else ratio_b * case.eps
    cost = case.C * (spread * case.eps / case.C.amax((-1, -2), keepdim=True))
    problem = case.problem(cost=cost, rho_a=ratio_a * case.eps, rho_b=rho_b)
    fast = solve(problem, "unbalanced", tol=1e-11, max_iter=5000)
    plain = solve(problem, "sinkhorn", tol=1e-11, max_iter=5000)
    note(f"{problem!r}: iterations {fast.iterations} (unbalanced) vs {plain.iterations} (sinkhorn)")
    assert fast.converged and plain.converged
    mass = problem.a.sum() + problem.b.sum()
    torch.testing.assert_close(fast.matrix, plain.matrix, rtol=0, atol=1e-7 * mass.item())


# ------------------------------------------------------------------------------------------------ gradients


@given(cases(dtypes=(torch.float64,), solvers=("sinkhorn", "unbalanced"), eps=(1e-2, 10.0)))
@examples(50)
def test_implicit_gradients_are_finite(case):
    C = case.C.clone().requires_grad_()
    a = None if case.a is None else case.a.clone().requires_grad_()
    plan = run(case, case.problem(cost=C, a=a), grad="implicit", tol=1e-10, max_iter=2000)
    weights = torch.randn(plan.matrix.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = (plan.matrix * weights).sum() + plan.value.sum()
    inputs = [t for t in (C, a) if t is not None]
    # with both sides free and R = 1 the plan is exp(-C/eps): it does not depend on a
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    assert grads[0] is not None
    for grad in grads:
        assert grad is None or torch.isfinite(grad).all()


# ------------------------------------------------------------------------------------------------ invariances


@given(cases(dtypes=(torch.float64,)), log_uniform(1e-2, 1e2), st.integers(1, 20))
@examples(60)
def test_scaling_cost_eps_and_rho_together_leaves_the_plan_unchanged(case, s, iterations):
    """The objective of ``(s C, s eps, s rho)`` is ``s`` times the original, so every iterate is the same plan
    with potentials ``s f``, ``s g`` (compared after the same fixed number of iterations)."""
    base = run(case, tol=0, max_iter=iterations)
    scaled_problem = case.problem(cost=s * case.C, eps=s * case.eps, rho_a=s * case.rho_a, rho_b=s * case.rho_b)
    scaled = run(case, scaled_problem, tol=0, max_iter=iterations)
    torch.testing.assert_close(scaled.matrix, base.matrix, rtol=1e-8, atol=1e-12)
    scale = 1 + base.f.abs().max() + base.g.abs().max()
    torch.testing.assert_close(scaled.f / s, base.f, rtol=0, atol=1e-9 * scale)
    torch.testing.assert_close(scaled.g / s, base.g, rtol=0, atol=1e-9 * scale)


@given(cases(dtypes=(torch.float64,)), st.integers(0, 2**31 - 1), st.integers(1, 20))
@examples(60)
def test_permuting_rows_and_columns_permutes_the_plan(case, seed, iterations):
    """``C[pi][:, sigma]`` with ``a[pi]``, ``b[sigma]`` gives ``P[pi][:, sigma]`` and ``f[pi]``, ``g[sigma]``."""
    n, m = case.C.shape[-2:]
    gen = torch.Generator().manual_seed(seed)
    rows, cols = torch.randperm(n, generator=gen), torch.randperm(m, generator=gen)
    base = run(case, tol=0, max_iter=iterations)
    permuted_problem = case.problem(
        cost=case.C[..., rows, :][..., cols],
        a=None if case.a is None else case.a[..., rows],
        b=None if case.b is None else case.b[..., cols],
    )
    permuted = run(case, permuted_problem, tol=0, max_iter=iterations)
    torch.testing.assert_close(permuted.matrix, base.matrix[..., rows, :][..., cols], rtol=1e-9, atol=1e-13)
    scale = 1 + base.f.abs().max() + base.g.abs().max()
    torch.testing.assert_close(permuted.f, base.f[..., rows], rtol=0, atol=1e-10 * scale)
    torch.testing.assert_close(permuted.g, base.g[..., cols], rtol=0, atol=1e-10 * scale)
