"""The Newton projection of low-rank Sinkhorn against Dykstra's (the same KL projection), on ordinary and on
nearly hard kernels, with the bound on g active, batched, with zero masses and from float32 inputs."""

from __future__ import annotations

import math

import pytest
import torch

from otalign import PointCloud, Problem
from otalign.solvers import LowRankSinkhorn
from otalign.solvers.lowrank_dykstra import dykstra
from otalign.solvers.lowrank_newton import newton_projection

from test_lowrank_dykstra import kernels  # the same random kernels (pytest puts this folder on sys.path)

F64 = torch.float64


def assert_same(ours, ref, rtol=1e-9, atol=1e-13):
    for x, y in zip((ours.log_q, ours.log_r, ours.log_g), (ref.log_q, ref.log_r, ref.log_g)):
        torch.testing.assert_close(x.exp().double(), y.exp().double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [1e-10, 0.08])
def test_same_projection_as_dykstra(seed, alpha):
    args = kernels(30, 20, 5, seed, small_g=alpha > 0.01)
    ref = dykstra(*args, alpha, 1e-13, 50000)
    out = newton_projection(*args, alpha, 1e-13, 100)
    assert float(out.error) <= 1e-13 and out.iterations <= 20
    assert_same(out, ref)
    gen = torch.Generator().manual_seed(100 + seed)  # its own stream: the start does not depend on the test order
    start = tuple(torch.randn(5, generator=gen, dtype=F64) for _ in range(2))
    warm = newton_projection(*args, alpha, 1e-13, 100, start=start)
    assert_same(warm, ref)


def test_nearly_hard_kernels_take_few_iterations():
    """Kernels whose rows span e^-300 (the factors of a late step at epsilon = 0): Dykstra needs thousands of
    iterations, Newton a handful."""
    args = kernels(60, 40, 6, 4, spread=60.0)
    ref = dykstra(*args, 1e-10, 1e-10, 200000)
    out = newton_projection(*args, 1e-10, 1e-12, 100)
    assert ref.iterations >= 1000 and out.iterations <= 30
    assert_same(out, ref, rtol=1e-6, atol=1e-11)


def test_batched_equals_looped_and_zero_masses():
    parts = [kernels(20, 12, 3, seed) for seed in range(3)]
    log_kq, log_kr, log_kg, a, b = parts[1]
    a = a.clone()
    a[[0, 4]] = 0.0
    a = a / a.sum()
    parts[1] = [log_kq.masked_fill((a == 0)[:, None], -math.inf), log_kr, log_kg, a, b]
    tol = torch.tensor([1e-4, 1e-8, 1e-12], dtype=F64)
    batched = newton_projection(*(torch.stack(xs) for xs in zip(*parts)), 1e-10, tol, 100)
    for i, args in enumerate(parts):
        single = newton_projection(*args, 1e-10, float(tol[i]), 100)
        assert single.iterations <= batched.iterations and float(batched.error[i]) <= float(tol[i])
        for x, y in zip((batched.log_q[i], batched.log_r[i], batched.log_g[i]),
                        (single.log_q, single.log_r, single.log_g)):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)  # batched BLAS: rounding only
    Q = batched.log_q[1].exp()
    assert float(Q[[0, 4]].abs().max()) == 0.0 and bool(torch.isfinite(batched.log_g).all())


def test_float32_inputs_give_the_float64_projection_rounded():
    args = kernels(30, 20, 4, 6)
    ref = newton_projection(*args, 1e-10, 1e-13, 100)
    out = newton_projection(*(x.float() for x in args), 1e-10, 1e-6, 100)
    assert out.log_q.dtype == torch.float32 and float(out.error) <= 1e-6
    assert_same(out, ref, rtol=1e-4, atol=1e-7)


def test_projection_option_is_checked():
    with pytest.raises(ValueError, match=r"^projection: expected one of"):
        LowRankSinkhorn(rank=2, projection="sinkhorn")


def test_gradcheck_through_newton_projections_float64():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 2, generator=gen, dtype=F64), torch.randn(4, 2, generator=gen, dtype=F64)
    solver = LowRankSinkhorn(rank=2, epsilon=0.1, projection="newton", inner_tol=0.0, inner_max_iter=4)

    def value(x, y):
        return solver(Problem(PointCloud(x, y), eps=0.1), max_iter=3, tol=0).value

    assert torch.autograd.gradcheck(value, (x.requires_grad_(), y.requires_grad_()), atol=1e-6, rtol=1e-5)


def test_any_warm_start_reaches_the_projection():
    """Random warm starts, including ones where every bound ``g >= alpha`` is active (the Hessian is then singular
    along each side's constant direction and the ridged Newton step is of order 1e10): the capped step converges to
    Dykstra's projection from each (one such start used to stop at once with error 1.2)."""
    for seed in range(3):
        args = kernels(30, 20, 5, seed, small_g=True)
        ref = dykstra(*args, 0.08, 1e-13, 50000)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(40):
            start = tuple(3 * torch.randn(5, generator=gen, dtype=F64) for _ in range(2))
            out = newton_projection(*args, 0.08, 1e-13, 100, start=start)
            assert float(out.error) <= 1e-13
            assert_same(out, ref)
    args = kernels(30, 20, 5, 2, small_g=True)
    gen = torch.Generator().manual_seed(91)
    start = tuple(torch.randn(5, generator=gen, dtype=F64) for _ in range(2))
    assert_same(newton_projection(*args, 0.08, 1e-13, 100, start=start), dykstra(*args, 0.08, 1e-13, 50000))
