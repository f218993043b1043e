"""1-D OT in closed form: parity with POT's ``ot.wasserstein_1d`` / ``ot.emd_1d`` / ``ot.emd2_1d`` (float64, random
inputs of several sizes, uniform and weighted, batched), gradients, and input errors naming the argument."""

from __future__ import annotations

import pytest
import torch

import otalign
from otalign.oned import plan_1d

ot = pytest.importorskip("ot")
F64 = torch.float64


def _masses(k: int, gen: torch.Generator, *batch: int) -> torch.Tensor:
    w = torch.rand((k,) + batch, generator=gen, dtype=F64) + 0.1
    return w / w.sum(0, keepdim=True)


@pytest.mark.parametrize("n, m", [(1, 1), (5, 5), (7, 3), (40, 65), (200, 200)])
@pytest.mark.parametrize("p", [1, 1.5, 2, 3])
def test_matches_pot_uniform_and_weighted(n, m, p):
    gen = torch.Generator().manual_seed(n * 1000 + m)
    u = torch.randn(n, 3, generator=gen, dtype=F64)
    v = torch.randn(m, 3, generator=gen, dtype=F64) * 2 + 1
    torch.testing.assert_close(otalign.wasserstein_1d(u, v, p=p), ot.wasserstein_1d(u, v, p=p), rtol=1e-12, atol=1e-13)
    a, b = _masses(n, gen), _masses(m, gen)
    torch.testing.assert_close(otalign.wasserstein_1d(u, v, a, b, p=p), ot.wasserstein_1d(u, v, a, b, p=p),
                               rtol=1e-12, atol=1e-13)
    a2, b2 = _masses(n, gen, 3), _masses(m, gen, 3)  # one weight vector per batch element
    torch.testing.assert_close(otalign.wasserstein_1d(u, v, a2, b2, p=p), ot.wasserstein_1d(u, v, a2, b2, p=p),
                               rtol=1e-12, atol=1e-13)


def test_one_dimensional_input_gives_scalar_and_matches_emd2_1d():
    gen = torch.Generator().manual_seed(1)
    u, v = torch.randn(30, generator=gen, dtype=F64), torch.randn(20, generator=gen, dtype=F64)
    a, b = _masses(30, gen), _masses(20, gen)
    out = otalign.wasserstein_1d(u, v, a, b, p=2)
    assert out.shape == ()
    torch.testing.assert_close(out, torch.as_tensor(ot.emd2_1d(u.numpy(), v.numpy(), a.numpy(), b.numpy()), dtype=F64),
                               rtol=1e-12, atol=0)


def test_batch_axes_broadcast():
    gen = torch.Generator().manual_seed(2)
    u = torch.randn(10, 4, 2, generator=gen, dtype=F64)
    v = torch.randn(12, 1, 2, generator=gen, dtype=F64)
    out = otalign.wasserstein_1d(u, v, p=2)
    assert out.shape == (4, 2)
    expected = torch.stack([otalign.wasserstein_1d(u[:, i], v[:, 0], p=2) for i in range(4)])
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("n, m", [(6, 6), (9, 4), (50, 31)])
def test_plan_matches_emd_1d(n, m):
    gen = torch.Generator().manual_seed(n + m)
    u, v = torch.randn(n, generator=gen, dtype=F64), torch.randn(m, generator=gen, dtype=F64)
    a, b = _masses(n, gen), _masses(m, gen)
    plan = plan_1d(u, v, a, b)
    torch.testing.assert_close(plan, torch.as_tensor(ot.emd_1d(u.numpy(), v.numpy(), a.numpy(), b.numpy())),
                               rtol=0, atol=1e-14)
    torch.testing.assert_close(plan.sum(1), a, rtol=0, atol=1e-14)
    value = (plan * (u[:, None] - v[None, :]).abs() ** 3).sum()
    torch.testing.assert_close(value, otalign.wasserstein_1d(u, v, a, b, p=3), rtol=1e-12, atol=0)


def test_gradients_match_pot():
    gen = torch.Generator().manual_seed(3)
    u0, v0 = torch.randn(15, 2, generator=gen, dtype=F64), torch.randn(11, 2, generator=gen, dtype=F64)
    a0, b0 = _masses(15, gen), _masses(11, gen)
    grads = []
    for fn in (otalign.wasserstein_1d, ot.wasserstein_1d):
        u, v, a, b = (t.clone().requires_grad_() for t in (u0, v0, a0, b0))
        fn(u, v, a, b, p=2).sum().backward()
        grads.append([t.grad for t in (u, v, a, b)])
    for mine, theirs in zip(*grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-13)


def test_gradient_wrt_positions_by_finite_differences():
    gen = torch.Generator().manual_seed(4)
    u = torch.randn(8, generator=gen, dtype=F64, requires_grad=True)
    v = torch.randn(5, generator=gen, dtype=F64)
    a, b = _masses(8, gen), _masses(5, gen)
    assert torch.autograd.gradcheck(lambda x: otalign.wasserstein_1d(x, v, a, b, p=2), (u,))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(u=torch.zeros(0), v=torch.zeros(3)), "u"),
        (dict(u=torch.zeros(3), v=torch.tensor([0.0, float("nan")])), "v"),
        (dict(u=torch.zeros(3, 2), v=torch.zeros(3, 4)), "v"),
        (dict(u=torch.zeros(3), v=torch.zeros(2), u_weights=torch.tensor([0.5, 0.6, -0.1])), "u_weights"),
        (dict(u=torch.zeros(3), v=torch.zeros(2), u_weights=torch.ones(2)), "u_weights"),
        (dict(u=torch.zeros(3), v=torch.zeros(2), v_weights=torch.tensor([0.5, float("nan")])), "v_weights"),
        (dict(u=torch.zeros(3), v=torch.zeros(2), u_weights=torch.ones(3), v_weights=torch.ones(2)), "u_weights"),
        (dict(u=torch.zeros(3), v=torch.zeros(2), p=0.5), "p"),
        (dict(u=[0.0, 1.0], v=torch.zeros(2)), "u"),
    ],
)
def test_errors_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        otalign.wasserstein_1d(**kwargs)
