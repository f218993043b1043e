"""The absorbed kernel-domain soft-min (``otalign.softmin.absorbed``) against the log domain.

Its claim is that every half-step it answers with a product equals the log-domain soft-min up to rounding (a
certificate decides, per half-step), and that it falls back to the log domain otherwise. So: random states and
moves of every size (the product and the fallback both get exercised; counters say which ran), costs with a large
spread against eps, masses over 30 orders of magnitude and exact zeros, batches, both dtypes; whole solves with
``kernel="absorbed"`` equal ``kernel="blocked"``; ``kernel="auto"`` picks it only where no gradient flows through the
iterations, and implicit gradients do not change.
"""

from __future__ import annotations

import math

import pytest
import torch

import otalign
from otalign import DenseCost, PointCloud, Problem
from otalign.softmin import AbsorbedKernel, choose_softmin
from otalign.softmin import KernelDomain
from otalign.softmin import logsumexp
from otalign.solvers import Sinkhorn
from otalign.solvers.unbalanced import TranslationInvariantSinkhorn

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def exact(C: torch.Tensor, h: torch.Tensor, eps: float, axis: int) -> torch.Tensor:
    """``LSE[(h - C)/eps]`` along ``axis``, materialised, in float64."""
    C, h = C.double(), h.double()
    logits = (h.unsqueeze(-2) - C) / eps if axis == 1 else (h.unsqueeze(-1) - C) / eps
    return torch.logsumexp(logits, dim=-1 if axis == 1 else -2)


def assert_matches(out: torch.Tensor, C: torch.Tensor, h: torch.Tensor, eps: float, axis: int) -> None:
    expected = exact(C, h, eps, axis)
    # the log-sum-exp of (h - C)/eps is known to within the rounding of its largest terms, |h - C| / eps
    scale = 1.0 + (h.double().abs().amax() + C.double().abs().amax()) / eps
    torch.testing.assert_close(out.double(), expected, rtol=0.0, atol=TOL[C.dtype] * float(scale))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(12))
def test_every_half_step_equals_the_log_domain(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    n, m = (int(v) for v in torch.randint(2, 40, (2,), generator=gen))
    lead = (3,) if seed % 3 == 0 else ()
    eps = float(10 ** (-3 * torch.rand((), generator=gen)))  # 1e-3 .. 1: spread / eps from 1 to 2000
    C = torch.rand(lead + (n, m), generator=gen, dtype=torch.float64).to(dtype)
    geometry = DenseCost(C)
    for axis, size in ((1, m), (0, n)):
        kernel = AbsorbedKernel(geometry, eps)
        h = (eps * torch.randn(lead + (size,), generator=gen, dtype=torch.float64)).to(dtype)
        for _ in range(20):
            # moves from 1e-4 eps (the product answers) to 300 eps (the certificate fails, the log domain answers)
            move = eps * float(10 ** (6.5 * torch.rand((), generator=gen) - 4))
            h = h + (move * torch.randn(h.shape, generator=gen, dtype=torch.float64)).to(dtype)
            assert_matches(kernel(h, axis), C, h, eps, axis)
        assert kernel.products > 0 and kernel.absorptions > 0


def test_small_moves_use_the_product_and_large_ones_rebuild_the_kernel():
    gen = torch.Generator().manual_seed(0)
    C = torch.rand(30, 20, generator=gen)
    eps = 0.005  # spread / eps = 200: the plain kernel domain underflows, the absorbed kernel drops entries
    geometry = DenseCost(C)
    kernel = AbsorbedKernel(geometry, eps)
    h = torch.zeros(20)
    kernel(h, 1)
    assert (kernel.products, kernel.absorptions) == (0, 1)
    for _ in range(5):
        h = h + 0.1 * eps * torch.randn(20, generator=gen)
        assert_matches(kernel(h, 1), C, h, eps, 1)
    assert (kernel.products, kernel.absorptions) == (5, 1)
    assert (kernel.matrix == kernel.matrix.min()).sum() > 1  # entries below e^-T were raised to it
    # every column but one moves far down: rows whose entry in that column was raised to e^-T have almost nothing left
    h = h - 1000 * eps
    h[7] += 1000 * eps
    assert_matches(kernel(h, 1), C, h, eps, 1)
    assert (kernel.products, kernel.absorptions) == (5, 2)


def test_differentiable_inputs_go_to_the_log_domain():
    gen = torch.Generator().manual_seed(1)
    C = torch.rand(8, 5, generator=gen, dtype=torch.float64).requires_grad_()
    h = torch.randn(5, generator=gen, dtype=torch.float64).requires_grad_()
    kernel = AbsorbedKernel(DenseCost(C.detach()), 0.01)
    geometry = DenseCost(C)
    kernel.geometry = geometry
    out = kernel(h, 1)
    expected = exact(C, h, 0.01, 1)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.sum(), (C, h))
    expected_grads = torch.autograd.grad(expected.sum(), (C, h))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)
    assert kernel.products == kernel.absorptions == 0


def _problem(seed: int, dtype=torch.float64, batch=None, zeros=False, spread_masses=False, **kwargs) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    n, m = 24, 17
    x = torch.randn(lead + (n, 5), generator=gen, dtype=torch.float64)
    y = torch.randn(lead + (m, 5), generator=gen, dtype=torch.float64) + 0.3
    C = torch.cdist(x, y) ** 2
    a = torch.rand(lead + (n,), generator=gen, dtype=torch.float64) + 0.1
    b = torch.rand(lead + (m,), generator=gen, dtype=torch.float64) + 0.1
    if spread_masses:
        a = a * torch.logspace(-30, 0, n, dtype=torch.float64)
    if zeros:
        a[..., 2] = 0.0
        b[..., -1] = 0.0
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    return Problem(C.to(dtype), a.to(dtype), b.to(dtype), **kwargs)


CASES = {
    "balanced": dict(eps=0.05),
    "small eps": dict(eps=0.01),
    "batched": dict(eps=0.05, batch=3),
    "zero masses": dict(eps=0.05, zeros=True),
    "masses over 30 decades": dict(eps=0.05, spread_masses=True),
    "unbalanced": dict(eps=0.05, rho_a=0.5, rho_b=0.5),
    "semi-relaxed": dict(eps=0.05, rho_b=0.3),
    "uniform reference": dict(eps=0.05, rho_a=1.0, rho_b=1.0, reference="uniform"),
}


@pytest.mark.parametrize("solver", ["sinkhorn", "unbalanced"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_solves_equal_the_log_domain(case, solver):
    options = dict(CASES[case])
    if solver == "unbalanced" and "rho_b" not in options:
        options.update(rho_a=2.0, rho_b=2.0)
    problem = _problem(7, **options)
    kind = Sinkhorn if solver == "sinkhorn" else TranslationInvariantSinkhorn
    # iterate by iterate (plain Sinkhorn: the default's Anderson mixing amplifies rounding differences of the paths)
    plans = {k: otalign.solve(problem, kind(kernel=k, acceleration=None), max_iter=3000, tol=1e-9)
             for k in ("blocked", "absorbed")}
    ref, got = plans["blocked"], plans["absorbed"]
    assert got.converged == ref.converged
    assert abs(got.iterations - ref.iterations) <= 1
    live_a, live_b = problem.a > 0, problem.b > 0
    torch.testing.assert_close(got.f[live_a], ref.f[live_a], rtol=0, atol=1e-8)
    torch.testing.assert_close(got.g[live_b], ref.g[live_b], rtol=0, atol=1e-8)
    torch.testing.assert_close(got.matrix, ref.matrix, rtol=0, atol=1e-9)


def test_float32_at_small_eps_is_as_accurate_as_the_log_domain():
    """spread / eps ~ 10^4: float32 potentials carry ~1e-3 relative error in the exponents either way; the absorbed
    kernel's plan is no further from the float64 plan than the float32 log domain's."""
    reference = otalign.solve(_problem(3, eps=0.002), Sinkhorn(kernel="blocked"), max_iter=20, tol=0).matrix
    problem = _problem(3, dtype=torch.float32, eps=0.002)
    errors = {}
    for kernel in ("blocked", "absorbed"):
        plan = otalign.solve(problem, Sinkhorn(kernel=kernel), max_iter=20, tol=0)
        assert torch.isfinite(plan.f).all() and torch.isfinite(plan.g).all()
        errors[kernel] = float((plan.matrix.double() - reference).abs().sum())
    assert errors["absorbed"] <= 2 * errors["blocked"] + 1e-6, errors


def _picked(problem: Problem, tol: float) -> object:
    return choose_softmin(problem, "auto", tol)


def test_auto_picks_the_absorbed_kernel_only_without_a_gradient_through_the_iterations():
    problem = _problem(0, eps=0.001)  # spread / eps far above the plain kernel domain's limit
    assert isinstance(_picked(problem, 1e-6), AbsorbedKernel)
    assert isinstance(_picked(problem, 0.0), AbsorbedKernel)
    small_spread = _problem(0, eps=10.0)
    assert isinstance(_picked(small_spread, 0.0), KernelDomain)  # fixed iterations, differentiable: unchanged
    C = problem.geometry.cost.clone().requires_grad_()
    differentiable = Problem(C, problem.a, problem.b, eps=0.001)
    assert _picked(differentiable, 1e-6).variant == "blocked"
    with torch.no_grad():
        assert isinstance(_picked(differentiable, 1e-6), AbsorbedKernel)
    masked = Problem(DenseCost(problem.geometry.cost, mask=torch.eye(24, 17, dtype=torch.bool)), eps=0.001)
    assert _picked(masked, 1e-6).variant == "blocked"
    cloud = Problem(PointCloud(torch.randn(10, 3), torch.randn(12, 3)), eps=0.01)
    assert isinstance(_picked(cloud, 1e-6), AbsorbedKernel)  # 120 entries: a small kernel


def test_auto_keeps_large_online_geometries_online(monkeypatch):
    import otalign.softmin.absorbed as absorption

    monkeypatch.setattr(absorption, "MAX_ELEMENTS_ONLINE", 119)
    monkeypatch.setattr(absorption, "MAX_ELEMENTS", 119)
    assert _picked(Problem(PointCloud(torch.randn(10, 3), torch.randn(12, 3)), eps=0.01), 1e-6).variant == "blocked"
    assert _picked(Problem(torch.rand(10, 12), eps=0.01), 1e-6).variant == "blocked"
    monkeypatch.setattr(absorption, "MAX_ELEMENTS", 120)
    assert isinstance(_picked(Problem(torch.rand(10, 12), eps=0.01), 1e-6), AbsorbedKernel)


@pytest.mark.parametrize("grad", ["implicit", "envelope"])
def test_gradients_of_non_unrolled_modes_are_unchanged(grad):
    base = _problem(5, eps=0.02)
    values = {}
    for kernel in ("blocked", "absorbed"):
        C = base.geometry.cost.clone().requires_grad_()
        plan = otalign.solve(Problem(C, base.a, base.b, eps=0.02), Sinkhorn(kernel=kernel), tol=1e-10,
                             max_iter=5000, grad=grad)
        (cost_grad,) = torch.autograd.grad(plan.value, C)
        values[kernel] = (plan.value.detach(), cost_grad)
    torch.testing.assert_close(values["absorbed"][0], values["blocked"][0], rtol=1e-10, atol=0)
    torch.testing.assert_close(values["absorbed"][1], values["blocked"][1], rtol=1e-7, atol=1e-10)


def test_kernel_option_is_validated_and_the_absorbed_kernel_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="kernel"):
        Sinkhorn(kernel="absorb")
    with pytest.raises(ValueError, match="without a mask"):
        AbsorbedKernel(DenseCost(torch.rand(3, 3), mask=torch.eye(3, dtype=torch.bool)), 0.1)
    with pytest.raises(ValueError, match="float32 or float64"):
        AbsorbedKernel(DenseCost(torch.rand(3, 3, dtype=torch.float16)), 0.1)


@pytest.mark.parametrize("cost", ["sqeuclidean", "negative_cosine", "euclidean"])
def test_point_clouds_solve_as_in_the_log_domain(cost):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 30, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 25, 4, generator=gen, dtype=torch.float64)
    problem = Problem(PointCloud(x, y, cost), eps={"sqeuclidean": 0.5, "euclidean": 0.1}.get(cost, 0.02))
    plans = {k: otalign.solve(problem, Sinkhorn(kernel=k), max_iter=5000, tol=1e-9) for k in ("blocked", "absorbed")}
    assert plans["absorbed"].converged and plans["blocked"].converged
    torch.testing.assert_close(plans["absorbed"].f, plans["blocked"].f, rtol=0, atol=1e-8)
    torch.testing.assert_close(plans["absorbed"].g, plans["blocked"].g, rtol=0, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_product_never_forms_denormal_numbers(dtype):
    """Kernel entries are >= e^-T (smaller ones are raised to it when the kernel is rebuilt) and weights are raised
    to >= e^-W, with T + W inside the normal range: every product term is a normal number."""
    from otalign.softmin.absorbed import _LIMITS

    floor_t, floor_w, _, _ = _LIMITS[dtype]
    C = torch.rand(50, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    eps = 1e-3  # spread / eps = 1000: most entries fall below e^-T
    kernel = AbsorbedKernel(DenseCost(C), eps)
    kernel(torch.zeros(40, dtype=dtype), 1)
    smallest = float(kernel.matrix.min())
    assert smallest >= math.exp(-floor_t) * (1 - 1e-6) and smallest <= math.exp(-floor_t) * (1 + 1e-6)
    assert math.exp(-floor_t - floor_w) > torch.finfo(dtype).tiny


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("offset", [0.0, 20.0, -30.0, "above", "below"])
def test_column_steps_rebuilt_around_the_hint_equal_the_log_domain(dtype, offset):
    """A column half-step whose product is rejected rebuilds around its hint in one pass; a hint that is off by more
    than the headroom (above or below the output by 10 T, in logit units) falls back to the log domain: results
    agree either way."""
    from otalign.softmin.absorbed import _LIMITS

    miss = isinstance(offset, str)
    if miss:
        offset = (1 if offset == "above" else -1) * 10 * _LIMITS[dtype][0]
    gen = torch.Generator().manual_seed(3)
    C = torch.rand(2, 37, 29, generator=gen, dtype=torch.float64).to(dtype)
    eps = 0.004
    kernel = AbsorbedKernel(DenseCost(C), eps)
    for step in range(6):
        h = (eps * 3000 * torch.randn(2, 37, generator=gen, dtype=torch.float64)).to(dtype)  # far moves: rebuilds
        hint = exact(C, h, eps, 0).to(dtype) + offset
        assert_matches(kernel(h, 0, hint=hint), C, h, eps, 0)
    assert kernel.rejected == 5
    assert kernel.hint_misses == (6 if miss else 0)  # the first call (no kernel yet) rebuilds around its hint too


def embeddings_cost(n: int) -> torch.Tensor:
    """``-cos`` between two sets of normalised 128-d Gaussian embeddings, float32 (the peer benchmark's cost)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, 128, generator=gen, dtype=torch.float64), dim=1)
    y = torch.nn.functional.normalize(torch.randn(n, 128, generator=gen, dtype=torch.float64), dim=1)
    return (-(x @ y.T)).float()


def test_fewer_rebuilds_at_small_eps_and_the_same_plan():
    """eps = 0.002 on a spread of about 1 (spread / eps = 500), 20 iterations from zero: the kernel's headroom
    (scaled to e^X) and the column rebuild around the hint leave 2 rebuilds and 1 rejected product (it took 3
    rebuilds, 2 of them after a rejected product and one more log-domain half-step, before); the plan agrees with
    the log domain's."""
    from otalign.halfstep import col_step, row_step

    problem = Problem(embeddings_cost(256), eps=0.002)
    kernel = AbsorbedKernel(problem.geometry, problem.eps)
    f = g = torch.zeros(256)
    hint_f = hint_g = None
    for _ in range(20):
        f, hint_f = row_step(problem, g, kernel, hint_f)
        g, hint_g = col_step(problem, f, kernel, hint_g)
    assert (kernel.absorptions, kernel.rejected, kernel.hint_misses, kernel.products) == (2, 1, 0, 38)
    plans = {k: otalign.solve(problem, Sinkhorn(kernel=k), max_iter=20, tol=0, grad="detach")
             for k in ("blocked", "absorbed")}
    scale = float(problem.cost.abs().max()) * 2e-5
    torch.testing.assert_close(plans["absorbed"].f, plans["blocked"].f, rtol=0, atol=scale)
    torch.testing.assert_close(plans["absorbed"].g, plans["blocked"].g, rtol=0, atol=scale)
    torch.testing.assert_close(plans["absorbed"].matrix, plans["blocked"].matrix, rtol=2e-3, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spread", [0.0, 0.3, 1.0, 3.0, "zero mass"])
@pytest.mark.parametrize("lead", [(), (2,)])
def test_row_rebuilds_from_the_cost_row_minima_equal_the_log_domain(dtype, spread, lead):
    """A row half-step whose input spreads over at most ``TOP_SLACK`` logits (a cold start: none) rebuilds around an
    upper bound of each row's largest logit taken from the cost's row minima, without reading the logits' maxima;
    other inputs (a larger spread, a zero mass's ``-inf``) take the exact maxima. The ``lse`` equals the log domain's
    either way, from costs whose rows sit far apart (row offsets of 0 .. 40 eps) down to eps where most entries are
    raised to the floor; the kernel it leaves answers the next column step exactly too."""
    from otalign.softmin.absorbed import TOP_SLACK

    gen = torch.Generator().manual_seed(7)
    n, m = 23, 31
    for eps in (1.0, 0.05, 0.002):
        offsets = 40 * eps * torch.rand(lead + (n, 1), generator=gen, dtype=torch.float64)
        C = (torch.rand(lead + (n, m), generator=gen, dtype=torch.float64) + offsets).to(dtype)
        base = 5.0 * torch.ones(lead + (m,), dtype=torch.float64)
        if spread == "zero mass":
            h = base.clone()
            h[..., 3] = -math.inf
        else:
            h = base + spread * eps * torch.rand(lead + (m,), generator=gen, dtype=torch.float64)
        h = h.to(dtype)
        kernel = AbsorbedKernel(DenseCost(C), eps)
        lse = kernel(h, 1)
        assert_matches(lse, C, h, eps, 1)
        uses_minima = spread != "zero mass" and spread <= TOP_SLACK
        assert (kernel.geometry._row_minima is not None) == uses_minima
        f = -eps * lse
        assert_matches(kernel(f, 0), C, f, eps, 0)
        assert kernel.absorptions + kernel.products == 2


def test_cold_start_solves_at_small_eps_equal_the_log_domain_from_the_row_minima(monkeypatch):
    """A fixed-count solve from zero at eps = 0.01 on the peer benchmark's cost (spread / eps about 90: the
    absorbed kernel's scaling form) starts from a rebuild around the cost's row minima; its plan equals the
    log domain's, in float32 and float64."""
    bounds = []
    original = AbsorbedKernel._row_tops
    monkeypatch.setattr(AbsorbedKernel, "_row_tops", lambda self, h: bounds.append(original(self, h)) or bounds[-1])
    for dtype in (torch.float32, torch.float64):
        problem = Problem(embeddings_cost(200).to(dtype), eps=0.01)
        plans = {k: otalign.solve(problem, Sinkhorn(kernel=k), max_iter=15, tol=0, grad="detach")
                 for k in ("blocked", "absorbed")}
        atol = 2e-5 if dtype == torch.float32 else 1e-11
        torch.testing.assert_close(plans["absorbed"].f, plans["blocked"].f, rtol=0, atol=atol)
        torch.testing.assert_close(plans["absorbed"].g, plans["blocked"].g, rtol=0, atol=atol)
        # entries below the kernel's floor (about e^-35 of a row's largest in float32) are rounding, as in the
        # log domain
        rtol, floor = (2e-3, 1e-9) if dtype == torch.float32 else (1e-9, 1e-20)
        torch.testing.assert_close(plans["absorbed"].matrix, plans["blocked"].matrix, rtol=rtol, atol=floor)
        assert bounds and bounds[0] is not None and bounds[0][1] is not None  # the first rebuild: constant input
        bounds.clear()
