"""Low-rank costs: the factorised squared-distance matrices and the linearised GW cost built from them.

A squared-Euclidean cost between ``x (n, d)`` and ``y (m, d)`` is ``|x_i|^2 + |y_j|^2 - 2 <x_i, y_j>``, i.e.
``C = A B^T`` with ``A = [|x|^2, 1, x]`` and ``B = [1, |y|^2, -2 y]`` (rank ``d + 2``). The linearisation of the
GW energy of two such costs is again of the form ``row_i + col_j + <left_i, right_j>`` (:class:`LowRankCost`), so
a GW solve over point clouds holds ``O((n + m) d)`` memory plus one block of rows.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from .. import costs
from ..geometry import BLOCK_ELEMENTS, Geometry, PointCloud


def squared_distance_scale(geometry: Geometry) -> Optional[float]:
    """``1`` for a squared-Euclidean :class:`PointCloud`, ``1/2`` for a half squared-Euclidean one, else ``None``."""
    if not isinstance(geometry, PointCloud):
        return None
    if geometry.cost_fn is costs.sqeuclidean:
        return 1.0
    if geometry.cost_fn is costs.half_sqeuclidean:
        return 0.5
    return None


def factors(geometry: PointCloud) -> tuple[Tensor, Tensor]:
    """``(A (..., n, d + 2), B (..., m, d + 2))`` with ``A B^T`` the geometry's (half) squared-distance matrix.

    Unlike :func:`otalign.costs.sqeuclidean`, the product is not clamped at 0 (entries that should be 0 carry
    rounding errors of either sign)."""
    scale = squared_distance_scale(geometry)
    if scale is None:
        raise ValueError("geometry: only (half) squared-Euclidean point clouds have a low-rank factorisation")
    x, y = geometry.x, geometry.y
    x2 = (x * x).sum(-1, keepdim=True) * scale
    y2 = (y * y).sum(-1, keepdim=True) * scale
    left = torch.cat((x2, torch.ones_like(x2), x), dim=-1)
    right = torch.cat((torch.ones_like(y2), y2, y * (-2.0 * scale)), dim=-1)
    return left, right


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
