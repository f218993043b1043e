"""Free-support barycenters: parity with POT's ``ot.lp.free_support_barycenter`` (exact inner plans) and
``ot.bregman.free_support_sinkhorn_barycenter`` (Sinkhorn inner plans) from the same initial support (float64,
several sizes, equal and unequal cloud sizes), and input errors naming the argument."""

from __future__ import annotations

import pytest
import torch

from otalign.free_support import free_support_barycenter

ot = pytest.importorskip("ot")
F64 = torch.float64


def _clouds(sizes, k, seed, d=2):
    gen = torch.Generator().manual_seed(seed)
    ys = [torch.randn(n, d, generator=gen, dtype=F64) * (1 + i) + i for i, n in enumerate(sizes)]
    ms = [torch.rand(n, generator=gen, dtype=F64) + 0.1 for n in sizes]
    x0 = torch.randn(k, d, generator=gen, dtype=F64)
    w = torch.rand(len(sizes), generator=gen, dtype=F64) + 0.1
    return ys, [m / m.sum() for m in ms], x0, w / w.sum()


@pytest.mark.parametrize("sizes, k", [((5, 5), 3), ((10, 12, 8), 6), ((30, 30, 30, 30), 20), ((40, 25), 15)])
def test_exact_matches_pot(sizes, k):
    ys, ms, x0, w = _clouds(sizes, k, sum(sizes))
    x = free_support_barycenter(ys, x0, ms, weights=w)
    torch.testing.assert_close(x, ot.lp.free_support_barycenter(ys, ms, x0, weights=w), rtol=0, atol=1e-10)


def test_stacked_clouds_and_barycenter_masses():
    ys, _, x0, w = _clouds((9, 9, 9), 5, 1, d=3)
    b = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=F64)
    x = free_support_barycenter(torch.stack(ys), x0, b=b, weights=w)
    uniform = [torch.full((9,), 1 / 9, dtype=F64)] * 3
    torch.testing.assert_close(x, ot.lp.free_support_barycenter(ys, uniform, x0, b=b, weights=w), rtol=0, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("sizes, k", [((8, 8), 4), ((12, 7, 10), 5)])
def test_sinkhorn_inner_solves_match_pot(sizes, k):
    ys, ms, x0, w = _clouds(sizes, k, 3 + k)
    x = free_support_barycenter(ys, x0, ms, weights=w, solver="sinkhorn", eps=1.0, inner_tol=1e-13,
                                inner_max_iter=10_000, max_iter=20)
    expected = ot.bregman.free_support_sinkhorn_barycenter(ys, ms, x0, 1.0, weights=w, numItermax=20,
                                                           numInnerItermax=10_000, stopThr=1e-7)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)


def test_errors_name_the_argument():
    ys, ms, x0, w = _clouds((5, 6), 3, 0)
    with pytest.raises(ValueError, match="init"):
        free_support_barycenter(ys, x0[:, :1], ms)
    with pytest.raises(ValueError, match="locations"):
        free_support_barycenter([ys[0], ys[1][:, :1]], x0, ms)
    with pytest.raises(ValueError, match=r"masses\[1\]"):
        free_support_barycenter(ys, x0, [ms[0], -ms[1]])
    with pytest.raises(ValueError, match="weights"):
        free_support_barycenter(ys, x0, ms, weights=torch.ones(3, dtype=F64))
    with pytest.raises(TypeError, match="locations"):
        free_support_barycenter([], x0)
