"""Factorised squared distances and the low-rank linearised cost."""

from __future__ import annotations

import pytest
import torch

from otalign import PointCloud, Problem, solve
from otalign.gromov import LowRankCost
from otalign.gromov.geometry import factors, squared_distance_scale
from otalign.softmin import logsumexp

from gw_reference import clouds


@pytest.mark.parametrize("cost, scale", [("sqeuclidean", 1.0), ("half_sqeuclidean", 0.5), ("euclidean", None)])
def test_factors_reproduce_squared_distances(cost, scale):
    x, y, _, _ = clouds(7, 5, seed=0, dx=3, dy=3)
    geometry = PointCloud(x, y, cost)
    assert squared_distance_scale(geometry) == scale
    if scale is None:
        with pytest.raises(ValueError, match="low-rank"):
            factors(geometry)
        return
    left, right = factors(geometry)
    assert left.shape == (7, 5) and right.shape == (5, 5)
    assert torch.allclose(left @ right.T, geometry.matrix(), atol=1e-14)


def test_low_rank_cost_blocks_logits_and_solves_match_dense():
    gen = torch.Generator().manual_seed(1)
    row, col = torch.rand(2, 9, generator=gen, dtype=torch.float64), torch.rand(2, 6, generator=gen, dtype=torch.float64)
    left, right = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64), torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    geometry = LowRankCost(row, col, left, right)
    dense = row[..., :, None] + col[..., None, :] + left @ right.transpose(-1, -2)
    assert torch.allclose(geometry.matrix(), dense, atol=1e-14)
    assert torch.allclose(geometry.block(geometry.tensors(), 2, 5), dense[:, 2:5], atol=1e-14)
    for axis, size in ((1, 6), (0, 9)):
        h = torch.randn(2, size, generator=gen, dtype=torch.float64)
        expected = torch.logsumexp((h.unsqueeze(-2 if axis == 1 else -1) - dense) / 0.3, dim=axis + 1)
        got = logsumexp(geometry, h, 0.3, axis, block_rows=4)
        assert torch.allclose(got, expected, atol=1e-12)
    lazy = solve(Problem(geometry, eps=0.3), max_iter=50, tol=0)
    full = solve(Problem(dense, eps=0.3), max_iter=50, tol=0)
    assert torch.allclose(lazy.matrix, full.matrix, atol=1e-13)
    shifted = geometry.shift_columns(col)
    assert torch.allclose(shifted.matrix(), dense - col[..., None, :], atol=1e-14)


def test_low_rank_cost_gradients_flow_to_factors():
    gen = torch.Generator().manual_seed(2)
    tensors = [torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in ((5,), (4,), (5, 2), (4, 2))]

    def value(*t):
        return solve(Problem(LowRankCost(*t), eps=0.5), max_iter=5, tol=0).value

    assert torch.autograd.gradcheck(value, tensors)
