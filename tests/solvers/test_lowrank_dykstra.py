"""The low-rank projection (Dykstra on scalings with log-domain frames) against a plain float64 log-domain Dykstra
written here; warm starts, check periods and re-framing give the same projection."""

from __future__ import annotations

import math

import pytest
import torch

from otalign.solvers.lowrank_dykstra import dykstra

F64 = torch.float64


def kernels(n: int, m: int, r: int, seed: int, spread: float = 3.0, dtype=F64, small_g: bool = False):
    """Random log-kernels and masses; ``small_g``: the first component's ``K_g`` is e^-10 times the others', so that
    a bound ``g >= alpha`` near ``1 / r`` is active there."""
    gen = torch.Generator().manual_seed(seed)
    log_kq = spread * torch.randn(n, r, generator=gen, dtype=F64)
    log_kr = spread * torch.randn(m, r, generator=gen, dtype=F64)
    log_kg = torch.randn(r, generator=gen, dtype=F64) - math.log(r)
    if small_g:
        log_kg[0] -= 10.0
    a = torch.rand(n, generator=gen, dtype=F64) + 0.5
    b = torch.rand(m, generator=gen, dtype=F64) + 0.5
    return [x.to(dtype) for x in (log_kq, log_kr, log_kg, a / a.sum(), b / b.sum())]


def reference(log_kq, log_kr, log_kg, a, b, alpha, iterations):
    """Scetbon, Cuturi & Peyre (2021), Algorithm 2, every product an exact log-sum-exp (float64)."""
    log_a, log_b = a.log(), b.log()
    v1 = v2 = q1 = q2 = q31 = q32 = torch.zeros_like(log_kg)
    g = log_kg
    for _ in range(iterations):
        u1 = log_a - torch.logsumexp(log_kq + v1, -1)
        u2 = log_b - torch.logsumexp(log_kr + v2, -1)
        g_ = g + q31
        gc = g_.clamp_min(math.log(alpha))
        q31 = g_ - gc
        t1 = torch.logsumexp(log_kq + u1[:, None], 0)
        t2 = torch.logsumexp(log_kr + u2[:, None], 0)
        g = (gc + q32 + v1 + q1 + t1 + v2 + q2 + t2) / 3
        v1_, v2_ = g - t1, g - t2
        q1, q2 = v1 + q1 - v1_, v2 + q2 - v2_
        q32 = gc + q32 - g
        v1, v2 = v1_, v2_
    return u1[:, None] + log_kq + v1, u2[:, None] + log_kr + v2, g


def close(ours, ref, rtol, atol):
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x.exp().double(), y.exp().double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [1e-10, 0.08])  # 0.08 with a small K_g: the bound g >= alpha is active
def test_matches_the_plain_log_domain_iteration(seed, alpha):
    args = kernels(30, 20, 5, seed, small_g=alpha > 0.01)
    out = dykstra(*args, alpha, 0.0, 40)  # tol 0: exactly 40 iterations, as the reference
    assert out.iterations == 40
    close((out.log_q, out.log_r, out.log_g), reference(*args, alpha, 40), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [1e-10, 0.08])
def test_warm_start_reaches_the_projection_of_a_cold_start(seed, alpha):
    args = kernels(30, 20, 5, seed, small_g=alpha > 0.01)
    cold = dykstra(*args, alpha, 1e-13, 20000)
    assert float(cold.error) <= 1e-13
    if alpha > 0.01:
        assert bool((cold.log_g.exp() < alpha * (1 + 1e-9)).any())  # the bound is active
    gen = torch.Generator().manual_seed(seed + 10)
    for start in (cold.scalings, tuple(3 * torch.randn(5, generator=gen, dtype=F64) for _ in range(2))):
        warm = dykstra(*args, alpha, 1e-13, 20000, start=start)
        assert float(warm.error) <= 1e-13
        close((warm.log_q, warm.log_r, warm.log_g), (cold.log_q, cold.log_r, cold.log_g), rtol=1e-9, atol=1e-14)
    if alpha < 0.01:  # started at the solution: one check period (with the bound active its correction restarts)
        assert dykstra(*args, alpha, 1e-13, 20000, start=cold.scalings).iterations == 10


def test_check_period_changes_only_where_it_stops():
    args = kernels(25, 15, 4, 3)
    every_one = dykstra(*args, 1e-10, 1e-12, 20000, every=1)
    every_ten = dykstra(*args, 1e-10, 1e-12, 20000)
    assert every_ten.iterations % 10 == 0 and every_ten.iterations >= every_one.iterations
    close((every_ten.log_q, every_ten.log_r), (every_one.log_q, every_one.log_r), rtol=1e-9, atol=1e-14)
    fixed = dykstra(*args, 1e-10, 0.0, 37)
    assert fixed.iterations == 37


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_scalings_far_outside_the_range_are_reframed_and_exact(dtype):
    """A component whose kernel column is e^-150 below the others (beyond float32's range) needs a column scaling of
    about +150: the frames move, the result is the float64 log-domain projection."""
    log_kq, log_kr, log_kg, a, b = kernels(30, 20, 4, 5, dtype=F64)
    log_kq = log_kq.clone()
    log_kq[:, 0] -= 150.0
    log_kr = log_kr.clone()
    log_kr[:, 1] -= 80.0
    ref = reference(log_kq, log_kr, log_kg, a, b, 1e-10, 3000)
    out = dykstra(*(x.to(dtype) for x in (log_kq, log_kr, log_kg, a, b)), 1e-10, 0.0, 3000)
    for x in (out.log_q, out.log_r, out.log_g):
        assert bool(torch.isfinite(x).all())
    rtol = 1e-9 if dtype == F64 else 2e-3
    close((out.log_q, out.log_r, out.log_g), ref, rtol=rtol, atol=1e-12 if dtype == F64 else 1e-6)


def test_batched_elements_are_independent():
    parts = [kernels(20, 12, 3, seed) for seed in range(3)]
    batched = [torch.stack(xs) for xs in zip(*parts)]
    tol = torch.tensor([1e-6, 1e-9, 1e-12], dtype=F64)
    out = dykstra(*batched, 1e-10, tol, 20000)
    for i, args in enumerate(parts):
        single = dykstra(*args, 1e-10, float(tol[i]), 20000)
        assert float(out.error[i]) <= float(tol[i])
        close((out.log_q[i], out.log_r[i], out.log_g[i]), (single.log_q, single.log_r, single.log_g),
              rtol=1e-12, atol=1e-15)


def test_zero_masses_give_zero_rows():
    log_kq, log_kr, log_kg, a, b = kernels(10, 8, 3, 7)
    a = a.clone()
    a[[2, 5]] = 0.0
    a = a / a.sum()
    log_kq = log_kq.masked_fill((a == 0)[:, None], -math.inf)
    out = dykstra(log_kq, log_kr, log_kg, a, b, 1e-10, 1e-12, 20000)
    Q = out.log_q.exp()
    assert bool(torch.isfinite(out.log_g).all()) and float(Q[[2, 5]].abs().max()) == 0.0
    torch.testing.assert_close(Q.sum(1), a, rtol=0, atol=1e-12)
