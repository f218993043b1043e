"""Gaussian OT: parity with POT's ``ot.gaussian`` (distance, Bures distance, mapping, empirical versions; float64,
several dimensions, batched and paired), gradients (finite differences, isotropic covariances), and input errors."""

from __future__ import annotations

import pytest
import torch

from otalign import gaussian

ot = pytest.importorskip("ot")
F64 = torch.float64


def _spd(gen, *shape, d):
    a = torch.randn(shape + (d, d), generator=gen, dtype=F64)
    return a @ a.transpose(-1, -2) + 0.1 * torch.eye(d, dtype=F64)


@pytest.mark.parametrize("d", [1, 3, 10])
def test_distance_and_mapping_match_pot(d):
    gen = torch.Generator().manual_seed(d)
    ms, mt = torch.randn(d, generator=gen, dtype=F64), torch.randn(d, generator=gen, dtype=F64)
    Cs, Ct = _spd(gen, d=d), _spd(gen, d=d)
    # POT returns shape (1,) for d = 1, a scalar otherwise; otalign always a scalar
    torch.testing.assert_close(gaussian.bures_wasserstein_distance(ms, mt, Cs, Ct),
                               ot.gaussian.bures_wasserstein_distance(ms, mt, Cs, Ct).reshape(()), rtol=1e-10,
                               atol=1e-12)
    torch.testing.assert_close(gaussian.bures_distance(Cs, Ct), ot.gaussian.bures_distance(Cs, Ct).reshape(()),
                               rtol=1e-9, atol=1e-10)
    A, b = gaussian.bures_wasserstein_mapping(ms, mt, Cs, Ct)
    A_pot, b_pot = ot.gaussian.bures_wasserstein_mapping(ms, mt, Cs, Ct)
    torch.testing.assert_close(A, A_pot, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(b, b_pot, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(A.T @ Cs @ A, Ct, rtol=1e-8, atol=1e-9)  # the map pushes Cs onto Ct


def test_batched_all_pairs_and_paired_match_pot():
    gen = torch.Generator().manual_seed(0)
    ms, mt = torch.randn(4, 3, generator=gen, dtype=F64), torch.randn(5, 3, generator=gen, dtype=F64)
    Cs, Ct = _spd(gen, 4, d=3), _spd(gen, 5, d=3)
    out = gaussian.bures_wasserstein_distance(ms, mt, Cs, Ct)
    assert out.shape == (4, 5)
    torch.testing.assert_close(out, ot.gaussian.bures_wasserstein_distance(ms, mt, Cs, Ct), rtol=1e-9, atol=1e-10)
    paired = gaussian.bures_wasserstein_distance(ms, mt[:4], Cs, Ct[:4], paired=True)
    torch.testing.assert_close(paired, ot.gaussian.bures_wasserstein_distance(ms, mt[:4], Cs, Ct[:4], paired=True),
                               rtol=1e-9, atol=1e-10)
    A, b = gaussian.bures_wasserstein_mapping(ms, mt[:4], Cs, Ct[:4])
    A1, b1 = ot.gaussian.bures_wasserstein_mapping(ms[1], mt[1], Cs[1], Ct[1])
    torch.testing.assert_close(A[1], A1, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(b[1], b1, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("n, m, d", [(50, 40, 2), (200, 300, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_empirical_versions_match_pot(n, m, d, bias):
    gen = torch.Generator().manual_seed(n + d)
    xs = torch.randn(n, d, generator=gen, dtype=F64)
    xt = torch.randn(m, d, generator=gen, dtype=F64) @ torch.randn(d, d, generator=gen, dtype=F64) + 2
    ws = torch.rand(n, 1, generator=gen, dtype=F64) + 0.1
    wt = torch.rand(m, 1, generator=gen, dtype=F64) + 0.1
    for weights in ((None, None), (ws, wt)):
        mine = gaussian.empirical_bures_wasserstein_distance(xs, xt, 1e-5, *weights, bias=bias)
        theirs = ot.gaussian.empirical_bures_wasserstein_distance(xs, xt, 1e-5, *weights, bias=bias)
        torch.testing.assert_close(mine, theirs.reshape(()), rtol=1e-9, atol=1e-10)  # POT: shape (1,)
        A, b = gaussian.empirical_bures_wasserstein_mapping(xs, xt, 1e-5, *weights, bias=bias)
        A_pot, b_pot = ot.gaussian.empirical_bures_wasserstein_mapping(xs, xt, 1e-5, *weights, bias=bias)
        torch.testing.assert_close(A, A_pot, rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(b, b_pot[0], rtol=1e-8, atol=1e-9)


def test_gradients_finite_including_isotropic_covariances():
    gen = torch.Generator().manual_seed(1)
    ms, mt = torch.randn(3, generator=gen, dtype=F64), torch.randn(3, generator=gen, dtype=F64)
    Cs = _spd(gen, d=3).requires_grad_()
    Ct = _spd(gen, d=3)
    assert torch.autograd.gradcheck(lambda c: gaussian.bures_wasserstein_distance(ms, mt, (c + c.T) / 2, Ct), (Cs,))
    eye = torch.eye(3, dtype=F64, requires_grad=True)
    value = gaussian.bures_wasserstein_distance(ms, mt, eye, 2 * torch.eye(3, dtype=F64))
    value.backward()
    assert bool(torch.isfinite(eye.grad).all())
    xs = torch.randn(30, 3, generator=gen, dtype=F64, requires_grad=True)
    xt = torch.randn(20, 3, generator=gen, dtype=F64)
    assert torch.autograd.gradcheck(lambda x: gaussian.empirical_bures_wasserstein_distance(x, xt), (xs,))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: gaussian.bures_wasserstein_distance(torch.zeros(3), torch.zeros(3), torch.eye(3), torch.eye(2)), "Ct"),
        (lambda: gaussian.bures_wasserstein_distance(torch.zeros(2), torch.zeros(3), torch.eye(3), torch.eye(3)),
         "ms"),
        (lambda: gaussian.bures_distance(torch.full((2, 2), float("nan")), torch.eye(2)), "Cs"),
        (lambda: gaussian.bures_wasserstein_mapping(torch.zeros(3), torch.zeros(3), torch.ones(3, 2), torch.eye(3)),
         "Cs"),
        (lambda: gaussian.empirical_bures_wasserstein_distance(torch.zeros(5), torch.zeros(5, 2)), "xs"),
        (lambda: gaussian.empirical_bures_wasserstein_distance(torch.zeros(5, 2), torch.zeros(4, 2),
                                                               wt=-torch.ones(4)), "wt"),
        (lambda: gaussian.empirical_bures_wasserstein_distance(torch.zeros(5, 2), torch.zeros(4, 2), reg=-1), "reg"),
    ],
)
def test_errors_name_the_argument(call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call()
