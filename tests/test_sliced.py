"""Sliced and max-sliced Wasserstein: parity with POT's ``ot.sliced_wasserstein_distance`` and
``ot.max_sliced_wasserstein_distance`` on the same projections and on the same seed (float64), batching,
gradients, and input errors naming the argument."""

from __future__ import annotations

import pytest
import torch

import otalign
from otalign.sliced import random_projections

ot = pytest.importorskip("ot")
F64 = torch.float64


def _clouds(n, m, d, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=F64)
    y = torch.randn(m, d, generator=gen, dtype=F64) * 1.5 + 0.5
    a = torch.rand(n, generator=gen, dtype=F64) + 0.1
    b = torch.rand(m, generator=gen, dtype=F64) + 0.1
    return x, y, a / a.sum(), b / b.sum(), gen


@pytest.mark.parametrize("n, m, d", [(10, 10, 2), (33, 20, 5), (150, 170, 8)])
@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_matches_pot_on_given_projections(n, m, d, p):
    x, y, a, b, gen = _clouds(n, m, d, n + m + d)
    theta = torch.randn(d, 25, generator=gen, dtype=F64)
    theta = theta / theta.norm(dim=0)
    for weights in ((None, None), (a, b)):
        mine = otalign.sliced_wasserstein(x, y, *weights, projections=theta, p=p)
        theirs = ot.sliced_wasserstein_distance(x, y, *weights, projections=theta, p=p)
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-13)
        mine = otalign.max_sliced_wasserstein(x, y, *weights, projections=theta, p=p)
        theirs = ot.max_sliced_wasserstein_distance(x, y, *weights, projections=theta, p=p)
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-13)


def test_seed_draws_pots_projections_and_leaves_global_rng():
    x, y, a, b, _ = _clouds(40, 30, 6, 0)
    state = torch.get_rng_state()
    mine = otalign.sliced_wasserstein(x, y, a, b, n_projections=30, seed=7)
    assert torch.equal(state, torch.get_rng_state())
    theirs = ot.sliced_wasserstein_distance(x, y, a, b, n_projections=30, seed=7)
    torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=0)
    theta = random_projections(6, 30, seed=7, dtype=F64)
    torch.testing.assert_close(theta.norm(dim=0), torch.ones(30, dtype=F64))


def test_batched_equals_loop():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 20, 4, generator=gen, dtype=F64)
    y = torch.randn(3, 15, 4, generator=gen, dtype=F64)
    theta = random_projections(4, 10, seed=1, dtype=F64)
    out = otalign.sliced_wasserstein(x, y, projections=theta)
    assert out.shape == (3,)
    expected = torch.stack([ot.sliced_wasserstein_distance(x[i], y[i], projections=theta) for i in range(3)])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)


def test_gradients_match_pot():
    x0, y0, a0, b0, _ = _clouds(25, 18, 3, 9)
    theta = random_projections(3, 12, seed=2, dtype=F64)
    grads = []
    for fn in (otalign.sliced_wasserstein, ot.sliced_wasserstein_distance):
        x, y, a, b = (t.clone().requires_grad_() for t in (x0, y0, a0, b0))
        fn(x, y, a, b, projections=theta).backward()
        grads.append([t.grad for t in (x, y, a, b)])
    for mine, theirs in zip(*grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-11, atol=1e-13)


def test_identical_clouds_give_zero():
    x, *_ = _clouds(50, 50, 3, 4)
    assert float(otalign.sliced_wasserstein(x, x.flip(0), seed=0)) == 0.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(x=torch.zeros(5), y=torch.zeros(5, 2)), "x"),
        (dict(x=torch.zeros(5, 2), y=torch.zeros(5, 3)), "y"),
        (dict(x=torch.zeros(5, 2), y=torch.full((5, 2), float("nan"))), "y"),
        (dict(x=torch.zeros(5, 2), y=torch.zeros(4, 2), a=-torch.ones(5)), "a"),
        (dict(x=torch.zeros(5, 2), y=torch.zeros(4, 2), b=torch.ones(5)), "b"),
        (dict(x=torch.zeros(5, 2), y=torch.zeros(4, 2), projections=torch.ones(3, 4)), "projections"),
        (dict(x=torch.zeros(5, 2), y=torch.zeros(4, 2), n_projections=0), "n_projections"),
        (dict(x=torch.zeros(5, 2), y=torch.zeros(4, 2), p=0), "p"),
    ],
)
def test_errors_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        otalign.sliced_wasserstein(**kwargs)
