"""Cost products without the n x m matrix: factored point-cloud costs, dense costs, row blocks."""

from __future__ import annotations

import math

import pytest
import torch

from otalign import DenseCost, PointCloud
from otalign.cost_operator import cost_operator
from otalign.costs import COSTS, pairwise

F64 = torch.float64


@pytest.mark.parametrize("cost", ["sqeuclidean", "half_sqeuclidean", "negative_cosine", "cosine", "euclidean"])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_products_equal_the_dense_matrix(cost, batch):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch + (9, 4), generator=gen, dtype=F64), torch.randn(batch + (7, 4), generator=gen, dtype=F64)
    R, Q = torch.rand(batch + (7, 3), generator=gen, dtype=F64), torch.rand(batch + (9, 3), generator=gen, dtype=F64)
    op = cost_operator(PointCloud(x, y, cost=cost))
    assert op.kind == ("blocked" if cost == "euclidean" else "factored")
    C = pairwise(x, y, cost)
    torch.testing.assert_close(op.matmul(R), C @ R, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.rmatmul(Q), C.transpose(-1, -2) @ Q, rtol=1e-12, atol=1e-12)
    if op.factors is not None:
        A, B = op.factors
        assert A.shape == batch + (9, 6) and B.shape == batch + (7, 6)


def test_dense_and_blocked_kinds():
    gen = torch.Generator().manual_seed(1)
    C = torch.rand(6, 5, generator=gen, dtype=F64)
    R = torch.rand(5, 2, generator=gen, dtype=F64)
    op = cost_operator(DenseCost(C))
    assert op.kind == "dense"
    torch.testing.assert_close(op.matmul(R), C @ R)
    x, y = torch.randn(300, 2, generator=gen, dtype=F64), torch.randn(200, 2, generator=gen, dtype=F64)
    cloud = PointCloud(x, y, cost=lambda u, v: COSTS["euclidean"](u, v) ** 3)
    cloud.block_elements = 2000  # several row blocks
    op = cost_operator(cloud)
    C = torch.cdist(x, y) ** 3
    Q, R = torch.rand(300, 4, generator=gen, dtype=F64), torch.rand(200, 4, generator=gen, dtype=F64)
    torch.testing.assert_close(op.matmul(R), C @ R, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(op.rmatmul(Q), C.T @ Q, rtol=1e-9, atol=1e-9)


def test_factored_sqeuclidean_is_accurate_far_from_the_origin_in_float32():
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(500, 3, generator=gen) + 1000.0, torch.randn(400, 3, generator=gen) + 1000.0
    R = torch.rand(400, 2, generator=gen)
    exact = (torch.cdist(x.double() - 1000, y.double() - 1000) ** 2) @ R.double()
    torch.testing.assert_close(cost_operator(PointCloud(x, y)).matmul(R).double(), exact, rtol=1e-4, atol=1e-3)


def test_masked_cost_is_rejected():
    C = torch.rand(4, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"^mask: masked costs"):
        cost_operator(DenseCost(C, mask=torch.eye(4, dtype=torch.bool)))


def test_gradients_flow_through_the_factors():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 2, generator=gen, dtype=F64, requires_grad=True)
    y = torch.randn(4, 2, generator=gen, dtype=F64, requires_grad=True)
    R = torch.rand(4, 2, generator=gen, dtype=F64)
    assert torch.autograd.gradcheck(lambda x, y: cost_operator(PointCloud(x, y)).matmul(R), (x, y))


@pytest.mark.parametrize("kind", ["factored", "dense", "blocked"])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_products_into_a_buffer(kind, batch):
    """``out=`` writes the same products into a given buffer (reused across the steps of a low-rank solve)."""
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(batch + (9, 3), generator=gen, dtype=F64), torch.randn(batch + (7, 3), generator=gen, dtype=F64)
    geometry = {"factored": PointCloud(x, y), "dense": DenseCost(pairwise(x, y, "sqeuclidean")),
                "blocked": PointCloud(x, y, cost=lambda u, v: COSTS["euclidean"](u, v) ** 3)}[kind]
    op = cost_operator(geometry)
    assert op.kind == kind
    R, Q = torch.rand(batch + (7, 2), generator=gen, dtype=F64), torch.rand(batch + (9, 2), generator=gen, dtype=F64)
    for product, right in ((op.matmul, R), (op.rmatmul, Q)):
        expected = product(right)
        out = torch.full_like(expected, math.nan)
        assert product(right, out=out) is out
        torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("batch", [(), (2,)])
def test_transposed_factors(batch):
    """``A^T``, ``B^T`` contiguous and detached, made once; a cost without factors names the method."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(batch + (9, 3), generator=gen, dtype=F64).requires_grad_(True)
    y = torch.randn(batch + (7, 3), generator=gen, dtype=F64)
    op = cost_operator(PointCloud(x, y))
    At, Bt = op.transposed_factors()
    A, B = op.factors
    assert At.is_contiguous() and Bt.is_contiguous() and not At.requires_grad
    torch.testing.assert_close(At, A.detach().transpose(-1, -2), rtol=0, atol=0)
    torch.testing.assert_close(Bt, B.transpose(-1, -2), rtol=0, atol=0)
    assert op.transposed_factors()[0] is At
    with pytest.raises(ValueError, match="^transposed_factors: the dense cost has no factors"):
        cost_operator(DenseCost(torch.rand(batch + (4, 5), dtype=F64))).transposed_factors()
