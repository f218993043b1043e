"""Geometries: where a problem's cost comes from.

A geometry hands the solvers its cost one block of rows at a time, so that the soft-min primitive
(:mod:`otalign.softmin`) never needs an n x m temporary. :class:`DenseCost` wraps a cost matrix already in memory;
:class:`PointCloud` recomputes cost blocks from two point clouds, so a problem needs O((n + m) d) memory.

Shapes: a geometry is ``(n, m)`` or batched ``(B, n, m)``; rows are the source side (masses ``a``), columns the
target side (masses ``b``).
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from .costs import CostFn, get_cost

#: Elements per row block: 2^19 float32 values (2 MiB) kept the blocks in this CPU's L2 cache in our measurements.
BLOCK_ELEMENTS = 1 << 19


class Geometry:
    """Base class. Subclasses define :meth:`tensors`, :meth:`block` and the shape attributes."""

    n: int
    m: int
    batch: Optional[int]

    def tensors(self) -> tuple[Tensor, ...]:
        """The tensors the cost is a differentiable function of."""
        raise NotImplementedError

    def block(self, tensors: Sequence[Tensor], start: int, stop: int) -> Tensor:
        """Rows ``start:stop`` of the cost, ``(..., stop - start, m)``, computed from ``tensors``."""
        raise NotImplementedError

    def with_tensors(self, tensors: Sequence[Tensor]) -> "Geometry":
        """The same geometry over other tensors (e.g. detached ones)."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors()[0].dtype

    @property
    def device(self) -> torch.device:
        return self.tensors()[0].device

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return () if self.batch is None else (self.batch,)

    def block_rows(self, block_rows: Optional[int] = None) -> int:
        """Rows per block: ``block_rows`` if given, else as many as fit in :data:`BLOCK_ELEMENTS`."""
        if block_rows is not None:
            return max(1, int(block_rows))
        return max(1, BLOCK_ELEMENTS // max(1, self.m * (self.batch or 1)))

    def row_blocks(self, block_rows: Optional[int] = None) -> Iterator[tuple[int, int]]:
        step = self.block_rows(block_rows)
        for start in range(0, self.n, step):
            yield start, min(start + step, self.n)

    def matrix(self) -> Tensor:
        """The whole cost matrix ``(..., n, m)`` (materialised for point clouds)."""
        return self.block(self.tensors(), 0, self.n)

    def detach(self) -> "Geometry":
        return self.with_tensors([t.detach() for t in self.tensors()])


class DenseCost(Geometry):
    """A cost matrix already in memory, ``(n, m)`` or ``(B, n, m)``.

    ``mask`` (bool, broadcastable to the cost) marks forbidden pairs: they get cost ``+inf``, i.e. zero mass in
    every plan (GCA uses it to exclude self-pairs). The cost itself must be finite.
    """

    def __init__(self, cost: Tensor, mask: Optional[Tensor] = None):
        if mask is not None:
            cost = cost.masked_fill(mask, torch.inf)
        self.cost = cost
        self.mask = mask
        self.n, self.m = cost.shape[-2], cost.shape[-1]
        self.batch = cost.shape[0] if cost.dim() == 3 else None

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.cost,)

    def block(self, tensors: Sequence[Tensor], start: int, stop: int) -> Tensor:
        return tensors[0][..., start:stop, :]

    def with_tensors(self, tensors: Sequence[Tensor]) -> "DenseCost":
        out = DenseCost(tensors[0])
        out.mask = self.mask
        return out

    def matrix(self) -> Tensor:
        return self.cost


class PointCloud(Geometry):
    """Two point clouds ``x (n, d)`` and ``y (m, d)`` (or batched ``(B, n, d)``, ``(B, m, d)``) and a cost function.

    The cost is never stored: each block of rows is recomputed when a solver needs it, so a solve holds O((n+m)d)
    memory plus one block. ``cost`` is a name from :data:`otalign.costs.COSTS` or a callable
    ``(x_rows (..., k, d), y (..., m, d)) -> (..., k, m)``.

    Example::

        geom = PointCloud(torch.randn(20_000, 64), torch.randn(20_000, 64), cost="sqeuclidean")
    """

    def __init__(self, x: Tensor, y: Optional[Tensor] = None, cost: Union[str, CostFn] = "sqeuclidean"):
        y = x if y is None else y
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError("x, y: point clouds must be tensors")
        if x.dim() not in (2, 3) or y.dim() != x.dim():
            raise ValueError(f"x, y: expected both (n, d) or both (B, n, d), got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[-1] != y.shape[-1] or x.shape[:-2] != y.shape[:-2]:
            raise ValueError(f"x, y: batch and feature dimensions differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        self.x, self.y = x, y
        self.cost_fn: CostFn = get_cost(cost)
        self.cost_name = cost if isinstance(cost, str) else getattr(cost, "__name__", "custom")
        self.n, self.m = x.shape[-2], y.shape[-2]
        self.batch = x.shape[0] if x.dim() == 3 else None

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.x, self.y)

    def block(self, tensors: Sequence[Tensor], start: int, stop: int) -> Tensor:
        x, y = tensors
        return self.cost_fn(x[..., start:stop, :], y)

    def with_tensors(self, tensors: Sequence[Tensor]) -> "PointCloud":
        return PointCloud(tensors[0], tensors[1], self.cost_fn)


def as_geometry(cost: Union[Tensor, Geometry]) -> Geometry:
    """Wrap a cost tensor in a :class:`DenseCost`; pass geometries through."""
    if isinstance(cost, Geometry):
        return cost
    if isinstance(cost, Tensor):
        return DenseCost(cost)
    raise TypeError(f"cost: expected a tensor (n, m) / (B, n, m) or a Geometry, got {type(cost).__name__}")


