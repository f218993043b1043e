"""The pieces of a low-rank step (otalign.solvers.lowrank_steps): the random initial factors against a plain
reference, and the factors stored transposed (the layout of a solve without a graph under Dykstra) against the
usual layout."""

from __future__ import annotations

import pytest
import torch

from otalign import PointCloud, Problem
from otalign.cost_operator import cost_operator
from otalign.solvers.lowrank_steps import (exp_contiguous, initial_factors, linear_gradients, log_stored_transposed,
                                           same_memory_transposed)

F64 = torch.float64


def reference_random(a: torch.Tensor, b: torch.Tensor, rank: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Per problem: ``|N(0, 1)| + 1`` draws (g, then Q's and R's rows of positive mass, one generator seeded with
    ``seed``), rows scaled to the masses, ``g`` to the total mass."""
    n, m = a.shape[-1], b.shape[-1]
    gs, qs, rs = [], [], []
    for ai, bi in zip(a.reshape(-1, n), b.reshape(-1, m)):
        gen = torch.Generator().manual_seed(seed)
        g = torch.randn(rank, generator=gen, dtype=a.dtype).abs() + 1
        factors = []
        for mass in (ai, bi):
            x = torch.zeros(mass.shape[0], rank, dtype=a.dtype)
            x[mass > 0] = torch.randn(int((mass > 0).sum()), rank, generator=gen, dtype=a.dtype).abs() + 1
            scale = torch.where(mass > 0, mass / x.sum(-1).clamp_min(1e-300), torch.zeros_like(mass))
            factors.append(x * scale[:, None])
        gs.append(g * ai.sum() / g.sum())
        qs.append(factors[0])
        rs.append(factors[1])
    batch = a.shape[:-1]
    return (torch.stack(qs).reshape(batch + (n, rank)), torch.stack(rs).reshape(batch + (m, rank)),
            torch.stack(gs).reshape(batch + (rank,)))


def masses(batch: tuple, n: int, m: int, dtype: torch.dtype, zeros: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(batch + (n,), generator=gen, dtype=F64) + 0.5
    b = torch.rand(batch + (m,), generator=gen, dtype=F64) + 0.5
    if zeros:
        a[..., 2] = 0.0
        b[..., -1] = 0.0
        if batch:
            a[0, 4] = 0.0  # the problems of the batch have different rows of zero mass
    return (a / a.sum(-1, keepdim=True)).to(dtype), (b / b.sum(-1, keepdim=True)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("batch", [(), (3,)])
@pytest.mark.parametrize("zeros", [False, True])
def test_random_initial_factors_equal_the_plain_reference(dtype, batch, zeros):
    a, b = masses(batch, 9, 7, dtype, zeros)
    x = torch.randn(batch + (9, 2), dtype=dtype)
    y = torch.randn(batch + (7, 2), dtype=dtype)
    Q, R, g = initial_factors(Problem(PointCloud(x, y), a, b, eps=0.1), 4, "random", 5)
    for ours, ref in zip((Q, R, g), reference_random(a, b, 4, 5)):
        assert ours.shape == ref.shape and ours.dtype == dtype
        torch.testing.assert_close(ours, ref)
    if zeros:
        assert float(Q[..., 2, :].abs().max()) == 0.0 and float(R[..., -1, :].abs().max()) == 0.0


def test_random_initial_factors_carry_the_masses_gradient():
    a, b = masses((), 6, 5, F64, False)
    a.requires_grad_(True)
    Q, R, g = initial_factors(Problem(PointCloud(torch.randn(6, 2, dtype=F64), torch.randn(5, 2, dtype=F64)), a, b,
                                      eps=0.1), 3, "random", 0)
    assert Q.requires_grad
    (grad,) = torch.autograd.grad(Q.sum(), a)
    torch.testing.assert_close(grad, torch.ones_like(a))  # the rows of Q sum to a


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_factors_stored_transposed_give_the_same_values_and_gradients(dtype, batch):
    gen = torch.Generator().manual_seed(2)
    Q = torch.rand(batch + (40, 6), generator=gen, dtype=F64).to(dtype)
    R = torch.rand(batch + (30, 6), generator=gen, dtype=F64).to(dtype)
    Q[..., 3, :] = 0.0
    log_g = torch.randn(batch + (6,), generator=gen, dtype=F64).to(dtype)
    log_q = log_stored_transposed(Q)
    assert log_q.transpose(-1, -2).is_contiguous() and not log_q.is_contiguous()
    torch.testing.assert_close(log_q, Q.log())
    back = exp_contiguous(log_q)
    assert back.is_contiguous()
    torch.testing.assert_close(back, Q)
    operator = cost_operator(PointCloud(torch.randn(batch + (40, 3), generator=gen, dtype=F64).to(dtype),
                                        torch.randn(batch + (30, 3), generator=gen, dtype=F64).to(dtype)))
    expected = linear_gradients(operator, Q, R, log_g)
    Qs, Rs = log_q.exp(), log_stored_transposed(R).exp()  # exp keeps the layout: both stored transposed
    assert not Qs.is_contiguous() and not Rs.is_contiguous()
    buffers = [None, None, torch.empty_like(Qs), torch.empty_like(Rs)]
    got = linear_gradients(operator, Qs, Rs, log_g, buffers)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for ours, ref in zip(got, expected):
        torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol)
    assert got[0].data_ptr() == buffers[2].data_ptr() and got[1].data_ptr() == buffers[3].data_ptr()
    assert got[0].transpose(-1, -2).is_contiguous() and got[1].transpose(-1, -2).is_contiguous()
    usual = linear_gradients(operator, Q.clone(), R.clone(), log_g, [None, None, None, None])  # buffers, usual layout
    for ours, ref in zip(usual, expected):
        torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol)


def test_same_memory_transposed_reinterprets_the_memory():
    x = torch.randn(2, 6, 3, dtype=F64)
    y = same_memory_transposed(x)
    assert y.shape == x.shape and y.data_ptr() == x.data_ptr() and y.transpose(-1, -2).is_contiguous()
    z = same_memory_transposed(y)
    assert z.shape == x.shape and z.data_ptr() == x.data_ptr() and z.is_contiguous()
    with pytest.raises(ValueError, match="^same_memory_transposed: x must be contiguous or stored transposed"):
        same_memory_transposed(torch.randn(6, 8, dtype=F64)[:, ::2])
