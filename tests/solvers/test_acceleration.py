"""Accelerated Sinkhorn (momentum, Anderson): the same fixed point as plain Sinkhorn, batched = looped, fewer
iterations where plain Sinkhorn is slow, and a fallback that keeps a bad relaxation from diverging."""

from __future__ import annotations

import warnings

import pytest
import torch

import otalign
from otalign import Problem, solve
from otalign.solvers import Sinkhorn
from otalign.solvers import sinkhorn as sinkhorn_module
from otalign.solvers.acceleration import AUTO_MIN_ENTRIES, AUTO_START


@pytest.fixture(autouse=True)
def auto_mixes_small_problems(monkeypatch):
    """``acceleration="auto"`` mixes from AUTO_MIN_ENTRIES cost entries on; these tests use small problems for its
    behaviour (:func:`test_auto_keeps_small_problems_plain` checks the threshold itself)."""
    monkeypatch.setattr(sinkhorn_module, "AUTO_MIN_ENTRIES", 0)


def slow_problem(dtype=torch.float64, lead=(), seed=0) -> Problem:
    """Uniform points in the unit square at eps = 0.002: plain Sinkhorn needs about 1,600 iterations."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(lead + (120, 2), generator=gen, dtype=torch.float64).to(dtype)
    y = torch.rand(lead + (90, 2), generator=gen, dtype=torch.float64).to(dtype)
    return Problem(otalign.costs.sqeuclidean(x, y), eps=0.002)


@pytest.mark.parametrize("acceleration", ["auto", "momentum", "anderson"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_same_fixed_point_as_plain_sinkhorn(acceleration, dtype):
    problem = slow_problem(dtype)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    plain = solve(problem, Sinkhorn(kernel="blocked", acceleration=None), tol=tol, max_iter=20000)
    fast = solve(problem, Sinkhorn(kernel="blocked", acceleration=acceleration), tol=tol, max_iter=20000)
    assert plain.converged and fast.converged
    assert fast.iterations <= plain.iterations
    # both plans are within tol of the marginals: their distance is of the order of tol / (strong convexity)
    assert float((fast.matrix.double() - plain.matrix.double()).abs().sum()) <= 100 * tol


def test_anderson_needs_several_times_fewer_iterations():
    problem = slow_problem()
    plain = solve(problem, Sinkhorn(kernel="blocked", acceleration=None), tol=1e-9, max_iter=20000)
    fast = solve(problem, Sinkhorn(kernel="blocked", acceleration="anderson"), tol=1e-9, max_iter=20000)
    assert fast.iterations * 3 <= plain.iterations, (fast.iterations, plain.iterations)


@pytest.mark.parametrize("acceleration", ["auto", "momentum", "anderson"])
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


@pytest.mark.parametrize("relaxation", [(1.0, 1.0), (float("inf"), 0.0), (0.0, float("inf")), (0.3, float("inf"))])
def test_relaxed_problems(relaxation):
    gen = torch.Generator().manual_seed(4)
    problem = Problem(torch.rand(30, 20, generator=gen, dtype=torch.float64), eps=0.01,
                      rho_a=relaxation[0], rho_b=relaxation[1])
    plain = solve(problem, Sinkhorn(acceleration=None), tol=1e-10, max_iter=20000)
    for acceleration in ("auto", "momentum", "anderson"):
        fast = solve(problem, Sinkhorn(acceleration=acceleration), tol=1e-10, max_iter=20000)
        assert fast.converged
        torch.testing.assert_close(fast.matrix, plain.matrix, rtol=0, atol=1e-8)


@pytest.mark.parametrize("options, name", [({"acceleration": "nesterov"}, "acceleration"),
                                           ({"acceleration": "momentum", "omega": 2.0}, "omega"),
                                           ({"acceleration": "anderson", "memory": 0}, "memory")])
def test_bad_options_are_named(options, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        Sinkhorn(**options)


def _random_problem(seed: int, dtype=torch.float64, lead=()) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    n, m = (int(v) for v in torch.randint(2, 30, (2,), generator=gen))
    eps = float(torch.exp(torch.empty(1).uniform_(-6.5, 0.0, generator=gen)))
    C = torch.rand(lead + (n, m), generator=gen, dtype=torch.float64).to(dtype)
    a = torch.rand(lead + (n,), generator=gen, dtype=torch.float64) + 0.1
    b = torch.rand(lead + (m,), generator=gen, dtype=torch.float64) + 0.1
    return Problem(C, (a / a.sum(-1, keepdim=True)).to(dtype), (b / b.sum(-1, keepdim=True)).to(dtype), eps=eps)


def test_auto_is_plain_sinkhorn_where_it_does_not_accelerate():
    """Fixed iteration counts, iterations recorded by autograd, and solves that converge within the plain start:
    the very same iterates as ``acceleration=None``."""
    slow = slow_problem()
    quick = Problem(slow.cost, eps=0.5)
    for problem, options in ((slow, {"tol": 0.0, "max_iter": 40}), (quick, {"tol": 1e-6, "max_iter": 1000})):
        auto = solve(problem, Sinkhorn(kernel="blocked"), **options)
        plain = solve(problem, Sinkhorn(kernel="blocked", acceleration=None), **options)
        assert auto.iterations == plain.iterations
        assert torch.equal(auto.f, plain.f) and torch.equal(auto.g, plain.g)
    assert plain.iterations <= AUTO_START
    recorded = Problem(slow.cost.clone().requires_grad_(True), eps=slow.eps)
    auto = solve(recorded, Sinkhorn(kernel="blocked"), tol=1e-6, max_iter=3000, grad="unroll")
    plain = solve(recorded, Sinkhorn(kernel="blocked", acceleration=None), tol=1e-6, max_iter=3000, grad="unroll")
    assert auto.iterations == plain.iterations > AUTO_START
    assert torch.equal(auto.g, plain.g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_auto_converges_wherever_plain_sinkhorn_does_and_ends_on_a_column_step(dtype):
    """Property over random balanced problems (eps from 1.5e-3 to 1): wherever plain Sinkhorn converges, the
    default converges too, to the same plan within the tolerance, never in more iterations than plain needs plus
    the plain start, and its plan meets the column marginal exactly (it ends on a plain column step)."""
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    for seed in range(30):
        problem = _random_problem(seed, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", otalign.ConvergenceWarning)
            plain = solve(problem, Sinkhorn(acceleration=None), tol=tol, max_iter=4000)
            auto = solve(problem, tol=tol, max_iter=4000)
        if not plain.converged:
            continue
        assert auto.converged, seed
        assert auto.iterations <= plain.iterations + AUTO_START, (seed, auto.iterations, plain.iterations)
        rows, cols = auto.marginal_error
        assert float(rows) <= tol and float(cols) <= 100 * torch.finfo(dtype).eps, (seed, float(cols))
        assert float((auto.matrix.double() - plain.matrix.double()).abs().sum()) <= 1e4 * tol


def test_the_dual_never_decreases_along_an_accelerated_solve(monkeypatch):
    """Anderson's guard: the dual objective after each row step (the quantity plain half-steps never lower) is
    non-decreasing along the iterates the loop keeps (a rejected mixed step is measured, then replaced by the
    measurement at its plain image), up to the dual's rounding."""
    from otalign.solvers import acceleration

    module = sinkhorn_module
    events = []
    measure, judge = module._dual_after_row_step, acceleration.Anderson.judge

    def record_dual(problem, f, g, lse):
        value = measure(problem, f, g, lse)
        events.append(("dual", float(value)))
        return value

    def record_verdict(self, lowered):
        events.append(("rejected", bool(lowered.any())))
        judge(self, lowered)

    monkeypatch.setattr(module, "_dual_after_row_step", record_dual)
    monkeypatch.setattr(acceleration.Anderson, "judge", record_verdict)
    plan = solve(slow_problem(), Sinkhorn(kernel="blocked", acceleration="anderson"), tol=1e-9, max_iter=20000)
    assert plan.converged
    kept, replace = [], False
    for kind, value in events:
        if kind == "rejected":
            replace = value
        elif replace:
            kept[-1], replace = value, False
        else:
            kept.append(value)
    assert any(kind == "rejected" and value for kind, value in events)  # the guard did act on this problem
    assert all(later >= earlier - 1e-12 * abs(earlier) for earlier, later in zip(kept, kept[1:]))


@pytest.mark.parametrize("acceleration", ["auto", "anderson"])
def test_a_stiff_batch_equals_its_elements(acceleration):
    """A batch whose elements need 4 and 3,000 iterations: each element keeps its own history and guard, so the
    batch gives what each element gives alone (the old shared restart stalled the slow element)."""
    gen = torch.Generator().manual_seed(7)
    C = torch.rand(3, 6, 5, generator=gen, dtype=torch.float64) * torch.tensor([0.03, 35.0, 0.15]).view(3, 1, 1)
    problem = Problem(C.double(), eps=0.1)
    solver = Sinkhorn(acceleration=acceleration)
    batched = solve(problem, solver, tol=1e-10, max_iter=5000)
    assert batched.converged
    for i in range(3):
        alone = solve(Problem(C[i].double(), eps=0.1), solver, tol=1e-10, max_iter=5000)
        assert alone.converged
        torch.testing.assert_close(batched.matrix[i], alone.matrix, rtol=0, atol=1e-8)


def test_auto_keeps_small_problems_plain(monkeypatch):
    """Below AUTO_MIN_ENTRIES cost entries the mixing's fixed cost per iteration outweighs what it saves: the
    default runs plain Sinkhorn there, and mixes at the threshold."""
    monkeypatch.setattr(sinkhorn_module, "AUTO_MIN_ENTRIES", AUTO_MIN_ENTRIES)
    assert AUTO_MIN_ENTRIES == 2**20
    problem = slow_problem()  # 120 x 90
    auto = solve(problem, Sinkhorn(kernel="blocked"), tol=1e-9, max_iter=20000)
    plain = solve(problem, Sinkhorn(kernel="blocked", acceleration=None), tol=1e-9, max_iter=20000)
    assert auto.iterations == plain.iterations and torch.equal(auto.g, plain.g)
    monkeypatch.setattr(sinkhorn_module, "AUTO_MIN_ENTRIES", 120 * 90)
    assert solve(problem, Sinkhorn(kernel="blocked"), tol=1e-9, max_iter=20000).iterations < plain.iterations


def test_the_guard_works_with_zero_masses():
    """Under the uniform reference a zero mass puts -inf in its potential: the dual and its rounding slack stay
    finite (the guard compares them), and the accelerated solve reaches plain Sinkhorn's plan."""
    base = slow_problem()
    a = torch.full((120,), 1.0 / 119, dtype=torch.float64)
    a[5] = 0.0
    problem = Problem(base.cost, a, eps=base.eps, reference="uniform")
    plain = solve(problem, Sinkhorn(acceleration=None), tol=1e-9, max_iter=20000)
    fast = solve(problem, Sinkhorn(acceleration="anderson"), tol=1e-9, max_iter=20000)
    assert plain.converged and fast.converged and fast.iterations < plain.iterations
    assert torch.isinf(fast.f[5]) and fast.f[5] < 0
    lse = torch.logsumexp((fast.g.unsqueeze(-2) - problem.cost) / problem.eps, -1)  # the row soft-min (uniform R)
    assert torch.isfinite(sinkhorn_module._dual_after_row_step(problem, fast.f, fast.g, lse))
    assert torch.isfinite(sinkhorn_module._dual_slack(problem, fast.f, fast.g))
    torch.testing.assert_close(fast.matrix, plain.matrix, rtol=0, atol=1e-9)
