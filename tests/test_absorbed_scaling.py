"""The absorbed kernel's certified scaling form (``AbsorbedKernel.scaling_iterations``, taken by fixed-count
balanced ``Sinkhorn`` solves without autograd) against the exact log domain (``kernel="blocked"``).

Its claim: the iterations it runs in scaling form, each product certified, give the half-step loop's potentials and
plan up to rounding; a refused product hands the solve back to the half-steps from the last certified iterate. So:
many seeds, eps from 0.002 (refusals and rebuilds happen) to 0.05, both dtypes, small to mid sizes, batches, both
reference measures, warm starts; refusals forced at every position; the tolerances of ``tests/test_absorption.py``.
"""

from __future__ import annotations

import pytest
import torch

import otalign
import otalign.softmin.absorbed as absorbed
from otalign import Problem
from otalign.softmin import AbsorbedKernel
from otalign.solvers import Sinkhorn

SIZES = [(7, 5), (64, 48), (300, 200)]


def _problem(seed: int, n: int, m: int, eps: float, dtype: torch.dtype, batch: bool, reference: str) -> Problem:
    """``-cos`` between normalised Gaussian embeddings (spread up to 2), random positive masses."""
    gen = torch.Generator().manual_seed(seed)
    lead = (2,) if batch else ()
    x = torch.nn.functional.normalize(torch.randn(lead + (n, 16), generator=gen, dtype=torch.float64), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(lead + (m, 16), generator=gen, dtype=torch.float64), dim=-1)
    a = torch.rand(lead + (n,), generator=gen, dtype=torch.float64) + 0.1
    b = torch.rand(lead + (m,), generator=gen, dtype=torch.float64) + 0.1
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    return Problem((-(x @ y.transpose(-1, -2))).to(dtype), a.to(dtype), b.to(dtype), eps=eps, reference=reference)


def _warm_start(problem: Problem, seed: int):
    gen = torch.Generator().manual_seed(seed + 1000)
    shape = problem.batch_shape
    f = 0.3 * torch.randn(shape + (problem.n,), generator=gen, dtype=torch.float64)
    g = 0.3 * torch.randn(shape + (problem.m,), generator=gen, dtype=torch.float64)
    return f.to(problem.dtype), g.to(problem.dtype)


@pytest.fixture
def runs(monkeypatch):
    """Records ``ran`` of every call to the scaling form."""
    record: list[int] = []
    original = AbsorbedKernel.scaling_iterations

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        record.append(out[-1])
        return out

    monkeypatch.setattr(AbsorbedKernel, "scaling_iterations", spy)
    return record


def _solve(problem: Problem, kernel: str, iterations: int, init=None):
    with torch.no_grad():
        plan = otalign.solve(problem, Sinkhorn(kernel=kernel), max_iter=iterations, tol=0, init=init, grad="detach")
        return plan.f, plan.g, plan.matrix, plan.iterations


def _assert_equal(problem: Problem, got, ref) -> None:
    """The tolerances of ``tests/test_absorption.py``: float64 ``f, g`` within 1e-8 and the plan within 1e-9;
    float32 ``f, g`` within ``2e-5 max |C|`` and the plan within ``rtol 2e-3, atol 1e-9``, the atol raised to what
    the certificate allows an entry raised to ``e^-T`` (the unit round-off times its column's mass, ``2^-24 b_j``:
    above 1e-9 where the masses are large, as in 7 x 5; the half-step path needs the same)."""
    if problem.dtype == torch.float64:
        atol, plan_tol = 1e-8, dict(rtol=0, atol=1e-9)
    else:
        plan_atol = max(1e-9, 2.0**-24 * float(problem.b.max()))
        atol, plan_tol = float(problem.geometry.cost.abs().max()) * 2e-5, dict(rtol=2e-3, atol=plan_atol)
    assert got[3] == ref[3]
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=atol)
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=atol)
    torch.testing.assert_close(got[2], ref[2], **plan_tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("eps", [0.002, 0.01, 0.05])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("seed", range(4))
def test_scaling_form_equals_the_log_domain(seed, size, eps, dtype, runs):
    batch, reference, warm = seed % 2 == 1, ("product", "uniform")[seed // 2 % 2], seed % 3 == 2
    problem = _problem(seed, *size, eps, dtype, batch, reference)
    init = _warm_start(problem, seed) if warm else None
    iterations = 12 + seed
    ref = _solve(problem, "blocked", iterations, init)
    assert not runs
    got = _solve(problem, "absorbed", iterations, init)
    _assert_equal(problem, got, ref)
    # the first row half-step builds the kernel around the start and hands its row sums to the scaling form
    assert 0 < sum(runs) <= iterations
    if eps == 0.05:  # no refusal after the first iteration where the kernel's headroom covers the whole solve (a
        # warm start's first column product may refuse the row rebuild's kernel: a column rebuild follows)
        assert sum(runs) >= iterations - 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("refuse", [1, 2, 5, 8, "always"])
def test_a_refused_product_falls_back_to_the_half_steps(refuse, dtype, monkeypatch, runs):
    """The ``refuse``-th product checked fails (a row product when odd, a column product when even; the products of
    a chunk are checked together, in order): the solve goes on by half-steps from the last certified iterate and
    still equals the log domain."""
    problem = _problem(11, 64, 48, 0.01, dtype, False, "product")
    checked = []
    original = absorbed._certified

    def certified(steps, *args):
        passed, start = original(steps, *args), len(checked)
        checked.extend(2 * len(steps) * [None])
        if refuse == "always":
            return 0
        index = refuse - 1 - start  # of the refused product in this chunk
        return min(passed, index // 2) if 0 <= index < 2 * len(steps) else passed

    ref = _solve(problem, "blocked", 15)
    monkeypatch.setattr(absorbed, "_certified", certified)
    got = _solve(problem, "absorbed", 15)
    _assert_equal(problem, got, ref)
    if refuse == "always":
        assert set(runs) == {0}
    else:
        assert runs[0] == (refuse - 1) // 2 and sum(runs) < 14  # stopped at the refusal, half-steps went on


def test_small_eps_refuses_rebuilds_and_resumes(runs):
    """eps = 0.002 from zero: the kernel built in the first iteration runs out of headroom, the scaling form stops
    short, a half-step rebuilds the kernel, and the scaling form resumes; the result equals the log domain."""
    problem = _problem(3, 300, 200, 0.002, torch.float32, False, "product")
    ref = _solve(problem, "blocked", 20)
    got = _solve(problem, "absorbed", 20)
    _assert_equal(problem, got, ref)
    assert len(runs) >= 2 and runs[-1] > 0, runs


@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("zeros", ["a", "b", "ab"])
def test_zero_masses(zeros, reference, runs):
    """Zero masses: on one side the scaling form runs (a zero scaling is exact); on both, the kernel's scalings hold
    ``-inf``, the scaling form declines before any product (``ran = 0``) and the half-steps run the solve. Either
    way the result equals the log domain, and the plan is finite (both sides: formed without the held kernel)."""
    problem = _problem(5, 64, 48, 0.05, torch.float64, False, reference)
    a, b = problem.a.clone(), problem.b.clone()
    if "a" in zeros:
        a[3] = 0.0
    if "b" in zeros:
        b[4] = 0.0
    problem = Problem(problem.geometry.cost, a / a.sum(), b / b.sum(), eps=0.05, reference=reference)
    ref = _solve(problem, "blocked", 10)
    got = _solve(problem, "absorbed", 10)
    live_a, live_b = problem.a > 0, problem.b > 0
    torch.testing.assert_close(got[0][live_a], ref[0][live_a], rtol=0, atol=1e-8)
    torch.testing.assert_close(got[1][live_b], ref[1][live_b], rtol=0, atol=1e-8)
    for got_potential, ref_potential in zip(got[:2], ref[:2]):
        assert torch.equal(torch.isinf(got_potential), torch.isinf(ref_potential))
    torch.testing.assert_close(got[2], ref[2], rtol=0, atol=1e-9)
    # zero a: from the first row rebuild on; zero b: the rebuild's column scaling holds -inf (declined), so from the
    # second iteration on, after a column rebuild
    assert sum(runs) == {"a": 10, "b": 9, "ab": 0}[zeros]


def test_a_cold_start_runs_in_scaling_form_from_its_first_rebuild(monkeypatch, runs):
    """From zero at eps = 0.01 (spread / eps about 200): one row rebuild, whose row sums are the scaling form's first
    product; every iteration then runs in scaling form (2 T - 1 products), and the columns' masses, which only a
    column half-step's certificate reads, are never summed."""
    summed = []
    original = AbsorbedKernel._column_mass
    monkeypatch.setattr(AbsorbedKernel, "_column_mass", lambda self: summed.append(None) or original(self))
    for dtype in (torch.float64, torch.float32):
        problem = _problem(2, 300, 200, 0.01, dtype, False, "product")
        ref = _solve(problem, "blocked", 15)
        got = _solve(problem, "absorbed", 15)
        _assert_equal(problem, got, ref)
        assert runs == [15] and not summed
        runs.clear()


def _reference_certified(steps, bound: float, limit: float) -> int:
    """Product by product, in order: output minimum above ``bound`` times the input's sum, sum at most ``limit``,
    for every problem of a batch (NaN fails)."""
    for k, (v, rows, u, cols) in enumerate(steps):
        for weights, out in ((v, rows), (u, cols)):
            total = weights.sum(-1)
            if not bool(((out.amin(-1) > total * bound) & (total <= limit)).all()):
                return k
    return len(steps)


@pytest.mark.parametrize("seed", range(60))
def test_a_chunk_is_certified_up_to_its_first_refused_product(seed):
    """``_certified`` on random chunks (one problem or a batch, n != m, 1 to 16 iterations) with a refused product
    planted anywhere: an output below the bound, a zero input, an input summing past the limit, NaN or infinity in
    an output; it returns the iterations before the first refusal, as a product-by-product check does."""
    gen = torch.Generator().manual_seed(seed)
    batch = () if seed % 2 else (3,)
    n, m, k = 5 + seed % 4, 3 + seed % 3, 1 + seed % 16
    steps = [tuple(torch.rand(batch + (size,), generator=gen, dtype=torch.float64) + 0.5
                   for size in (m, n, n, m)) for _ in range(k)]
    bound, limit = 1e-3, 1e3
    for _ in range(seed % 3):  # plant up to two refusals
        step, part = int(torch.randint(k, (), generator=gen)), int(torch.randint(4, (), generator=gen))
        tensor = steps[step][part]
        index = (0,) * len(batch) + (int(torch.randint(tensor.shape[-1], (), generator=gen)),)
        fault = int(torch.randint(4, (), generator=gen))
        if part in (1, 3):  # an output
            tensor[index] = (1e-9, float("nan"), float("inf"), 0.0)[fault]
        else:  # an input
            tensor[...] = 0.0 if fault == 0 else tensor
            tensor[index] = (0.0, 2e3, float("nan"), float("inf"))[fault]
    assert absorbed._certified(steps, bound, limit) == _reference_certified(steps, bound, limit)


@pytest.mark.parametrize("iterations", [1, 3, 4, 5, 12, 13, 20, 29, 100])
def test_chunks_cover_the_iterations(iterations):
    sizes = list(absorbed._chunks(iterations))
    assert sum(sizes) == iterations and all(0 < size <= absorbed.CHUNK for size in sizes)
    assert sizes[0] == min(4, iterations)


@pytest.mark.parametrize("eps", [0.01, 0.1])
def test_one_pass_iterations_at_full_size_equal_the_log_domain(eps, runs):
    """1024 x 1000 in float32 (the size where an iteration reads the kernel once, in blocks of rows: eps = 0.01
    on the absorbed kernel's scaling form, eps = 0.1 on the kernel domain's): the plan equals the log domain's."""
    from otalign.softmin.scaling_loop import sweep_blocks

    problem = _problem(21, 1024, 1000, eps, torch.float32, False, "product")
    assert sweep_blocks(torch.empty(1024, 1000)) is not None
    ref = _solve(problem, "blocked", 12)
    got = _solve(problem, "auto", 12)
    _assert_equal(problem, got, ref)
    assert (sum(runs) == 12) == (eps == 0.01)  # eps = 0.1: the kernel domain's loop, not the absorbed kernel's
