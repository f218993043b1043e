"""Low-rank costs: the factorised squared-distance matrices and the linearised GW cost built from them.

A squared-Euclidean cost between ``x (n, d)`` and ``y (m, d)`` is ``|x_i|^2 + |y_j|^2 - 2 <x_i, y_j>``, i.e.
``C = A B^T`` of rank ``d + 2`` (:meth:`otalign.costs.Cost.factors`). The linearisation of the
GW energy of two such costs is again of the form ``row_i + col_j + <left_i, right_j>`` (:class:`LowRankCost`), so
a GW solve over point clouds holds ``O((n + m) d)`` memory plus one block of rows.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..geometry import BLOCK_ELEMENTS, Geometry, PointCloud


def squared_distance_scale(geometry: Geometry) -> Optional[float]:
    """``s`` for a :class:`PointCloud` whose cost is ``s |x - y|^2`` (1 squared-Euclidean, 1/2 half), else ``None``."""
    if not isinstance(geometry, PointCloud):
        return None
    return geometry.cost_function.squared_distance_scale


def factors(geometry: PointCloud) -> tuple[Tensor, Tensor]:
    """``(A (..., n, d + 2), B (..., m, d + 2))`` with ``A B^T`` the geometry's (half) squared-distance matrix
    (:meth:`otalign.costs.Cost.factors`: centred, not clamped at 0)."""
    if squared_distance_scale(geometry) is None:
        raise ValueError("geometry: only (half) squared-Euclidean point clouds have a low-rank factorisation")
    return geometry.cost_function.factors(geometry.x, geometry.y)


class LowRankCost(Geometry):
    """The cost ``C_ij = row_i + col_j + <left_i, right_j>``: ``row (..., n)``, ``col (..., m)``, ``left (..., n, r)``,
    ``right (..., m, r)``. Blocks of rows, and the logits of the soft-min, are one matrix product each.

    Example::

        >>> geom = LowRankCost(torch.zeros(5), torch.zeros(4), torch.randn(5, 2), torch.randn(4, 2))
        >>> geom.matrix().shape   # (5, 4)
    """

    def __init__(self, row: Tensor, col: Tensor, left: Tensor, right: Tensor):
        self.row, self.col, self.left, self.right = row, col, left, right
        self.n, self.m = left.shape[-2], right.shape[-2]
        self.batch = left.shape[0] if left.dim() == 3 else None
        self.block_elements = 4 * BLOCK_ELEMENTS

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.row, self.col, self.left, self.right)

    def block(self, tensors: Sequence[Tensor], start: int, stop: int) -> Tensor:
        row, col, left, right = tensors
        out = left[..., start:stop, :] @ right.transpose(-1, -2)
        return out.add_(row[..., start:stop].unsqueeze(-1)).add_(col.unsqueeze(-2))

    def with_tensors(self, tensors: Sequence[Tensor]) -> "LowRankCost":
        return LowRankCost(*tensors)

    def shift_columns(self, shift: Tensor) -> "LowRankCost":
        """The cost ``C_ij - shift_j``."""
        return LowRankCost(self.row, self.col - shift, self.left, self.right)

    def logits(self, tensors, h_scaled, shift, axis, eps, start, stop) -> Tensor:
        row, col, left, right = tensors
        rows = slice(start, stop)
        if axis == 1:
            row_term = -row[..., rows] / eps - shift[..., rows]
            col_term = h_scaled - col / eps
        else:
            row_term = h_scaled[..., rows] - row[..., rows] / eps
            col_term = -col / eps - shift
        lhs = torch.cat((left[..., rows, :] * (-1.0 / eps), row_term.unsqueeze(-1), torch.ones_like(row_term).unsqueeze(-1)), -1)
        rhs = torch.cat((right, torch.ones_like(col_term).unsqueeze(-1), col_term.unsqueeze(-1)), -1)
        return lhs @ rhs.transpose(-1, -2)
