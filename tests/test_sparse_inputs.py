"""Sparse tensors at the public entry points are refused with a message naming the argument (one helper:
otalign.checks.check_tensor)."""

import pytest
import torch

import otalign
from otalign import losses, targets

N = 6


def _sparse(x):
    return x.to_sparse()


def _cost():
    return torch.rand(N, N, dtype=torch.float64)


def _views():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 4, generator=g), torch.randn(N, 4, generator=g)


def _loss(**kwargs):
    z0, z1 = kwargs.pop("z0", None), kwargs.pop("z1", None)
    d0, d1 = _views()
    return losses.GCAInfoNCE(temperature=0.5, iterations=3)(d0 if z0 is None else z0, d1 if z1 is None else z1,
                                                               **kwargs)


ENTRY_POINTS = {
    "cost": lambda: otalign.Problem(_sparse(_cost())),
    "a": lambda: otalign.Problem(_cost(), a=_sparse(torch.full((N,), 1.0 / N, dtype=torch.float64))),
    "b": lambda: otalign.Problem(_cost(), b=_sparse(torch.full((N,), 1.0 / N, dtype=torch.float64))),
    "mask": lambda: otalign.Problem(_cost(), mask=_sparse(torch.eye(N, dtype=torch.bool))),
    "x": lambda: otalign.Problem(otalign.PointCloud(_sparse(torch.randn(N, 3)), torch.randn(N, 3))),
    "y": lambda: otalign.Problem(otalign.PointCloud(torch.randn(N, 3), _sparse(torch.randn(N, 3)))),
    "z0": lambda: _loss(z0=_sparse(_views()[0])),
    "z1": lambda: _loss(z1=_sparse(_views()[1])),
    "labels": lambda: _loss(labels=_sparse(torch.arange(N))),
    "target": lambda: _loss(target=_sparse(targets.paired(N))),
    "target ": lambda: targets.check_target(_sparse(torch.ones(N, N)), (N, N)),
    "labels ": lambda: targets.from_labels(_sparse(torch.arange(N))),
    "target  ": lambda: otalign.Aligner("sinkhorn", "kl", eps=0.5)(_cost(), _sparse(torch.ones(N, N))),
    "z0 ": lambda: losses.NTXent()(_sparse(_views()[0]), _views()[1]),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_sparse_inputs_are_refused_naming_the_argument(name):
    with pytest.raises(ValueError, match=rf"^{name.strip()}: .*sparse.*to_dense"):
        ENTRY_POINTS[name]()


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_every_sparse_layout_is_refused(layout):
    dense = _cost()
    sparse = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    with pytest.raises(ValueError, match=r"^cost: .*sparse"):
        otalign.Problem(sparse)
    otalign.Problem(sparse.to_dense())  # the suggested fix works
