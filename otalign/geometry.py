"""Geometries: where a problem's cost comes from.

A geometry hands the solvers its cost one block of rows at a time, so that the soft-min primitive
(:mod:`otalign.softmin`) never needs an n x m temporary. :class:`DenseCost` wraps a cost matrix already in memory;
:class:`PointCloud` recomputes cost blocks from two point clouds, so a problem needs O((n + m) d) memory.

Shapes: a geometry is ``(n, m)`` or batched ``(B, n, m)``; rows are the source side (masses ``a``), columns the
target side (masses ``b``).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from .arrays import as_tensor
from .costs import Cost, CostFn, get_cost

#: Elements per row block: 2^19 float32 values (2 MiB) kept the blocks in this CPU's L2 cache in our measurements.
BLOCK_ELEMENTS = 1 << 19
#: Elements per row block on a GPU: blocks there must be large enough to hide the launch of each kernel (a few
#: microseconds) behind its memory traffic; 2^26 float32 values are 256 MiB per temporary.
GPU_BLOCK_ELEMENTS = 1 << 26
#: Rows per tile of a point cloud too wide for tall row blocks (:meth:`PointCloud.tiles`).
TILE_ROWS = 512


class Geometry:
    """Base class. Subclasses define :meth:`tensors`, :meth:`block` and the shape attributes."""

    n: int
    m: int
    batch: Optional[int]
    #: Target size of one block of logits (elements).
    block_elements: int = BLOCK_ELEMENTS
    #: Number of processes the rows are split across (:class:`otalign.distributed.ShardedGeometry`); 1 here.
    shards: int = 1

    #: Whether the cost is given by structure (points, factors) rather than as a matrix in memory.
    structured: bool = True

    @property
    def masked(self) -> bool:
        """Whether some pairs are forbidden (infinite cost from a mask)."""
        return False

    @property
    def process_local(self) -> "Geometry":
        """The geometry of the rows this process holds (itself, unless the rows are sharded)."""
        return self

    @property
    def n_global(self) -> int:
        """Rows of the whole problem (all ranks' rows for a sharded geometry)."""
        return self.n

    def reduce_rows(self, partial: Tensor, op: str = "sum") -> Tensor:
        """Finish a reduction over rows (``op``: ``"sum"``, ``"max"`` or ``"logsumexp"``). ``partial`` is the
        reduction over the rows this geometry holds: all of them here, so it is returned unchanged; a sharded
        geometry combines every rank's."""
        return partial

    def tensors(self) -> tuple[Tensor, ...]:
        """The tensors the cost is a differentiable function of."""
        raise NotImplementedError

    def block(self, tensors: Sequence[Tensor], start: int, stop: int) -> Tensor:
        """Rows ``start:stop`` of the cost, ``(..., stop - start, m)``, computed from ``tensors``."""
        raise NotImplementedError

    def with_tensors(self, tensors: Sequence[Tensor]) -> "Geometry":
        """The same geometry over other tensors (e.g. detached ones)."""
        raise NotImplementedError

    def logit_blocks(
        self, tensors: Sequence[Tensor], h_scaled: Tensor, shift: Tensor, axis: int, eps: float
    ) -> Callable[..., Tensor]:
        """The one traversal hook of the soft-min: ``(start, stop, cols=slice(None)) ->`` a fresh block
        ``(h - C)/eps - shift`` for rows ``start:stop`` and columns ``cols``, ``(..., stop - start, len(cols))``, for
        one pass over the blocks (or :meth:`tiles`). ``h_scaled = h / eps``; for ``axis=1`` ``h`` runs over columns
        ``(..., m)`` and ``shift`` over rows ``(..., n)``, for ``axis=0`` the other way round. What the blocks share
        (e.g. the augmented operands of a point cloud) is prepared once here; subclasses may compute the blocks
        without forming the cost block."""
        scratch = Scratch()

        def block(start: int, stop: int, cols: slice = slice(None)) -> Tensor:
            cost = self.block(tensors, start, stop)[..., cols]
            h_cols, shift_cols = (h_scaled[..., cols], shift) if axis == 1 else (h_scaled, shift[..., cols])
            return affine_logits(cost, h_cols, shift_cols, axis, eps, start, stop, scratch)
        return block

    def tiles(self, block_rows: Optional[int] = None) -> Iterator[tuple[int, int, slice]]:
        """``(start, stop, cols)``: the tiles one pass of the soft-min visits; here whole row blocks
        (:meth:`row_blocks`, ``cols`` = all columns)."""
        for start, stop in self.row_blocks(block_rows):
            yield start, stop, slice(None)

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
        """Rows per block: ``block_rows`` if given, else as many as fit in :attr:`block_elements` (on a CUDA device,
        :data:`GPU_BLOCK_ELEMENTS`)."""
        if block_rows is not None:
            return max(1, int(block_rows))
        cached = self.__dict__.get("_default_block_rows")
        if cached is None:  # shapes and device never change: computed once (this runs at every half-step)
            elements = GPU_BLOCK_ELEMENTS if self.device.type == "cuda" else self.block_elements
            cached = self.__dict__["_default_block_rows"] = max(1, elements // max(1, self.m * (self.batch or 1)))
        return cached

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

    ``bounds`` optionally states ``(low, high)`` with ``low <= C_ij <= high`` for every allowed pair, when the
    caller knows them without looking (e.g. ``(-1, 1)`` for ``-cos``): solvers then choose their path without a
    pass over the cost or a device-to-host read.
    """

    structured = False

    def __init__(self, cost: Tensor, mask: Optional[Tensor] = None, bounds: Optional[tuple[float, float]] = None):
        if mask is not None:
            cost = cost.masked_fill(mask, torch.inf)
        self.cost = cost
        self.mask = mask
        self._bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))
        self._row_minima: Optional[Tensor] = None
        self._transposed: Optional[Tensor] = None
        self.n, self.m = cost.shape[-2], cost.shape[-1]
        self.batch = cost.shape[0] if cost.dim() == 3 else None

    @property
    def masked(self) -> bool:
        return self.mask is not None

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.cost,)

    def block(self, tensors: Sequence[Tensor], start: int, stop: int) -> Tensor:
        return tensors[0][..., start:stop, :]

    def bounds(self) -> tuple[float, float]:
        """``(min, max)`` of the allowed entries: the ``bounds`` given to the constructor, else
        :meth:`measure_bounds` (measured once and cached)."""
        return self.measure_bounds() if self._bounds is None else self._bounds

    @property
    def bounds_unknown(self) -> bool:
        """Whether :meth:`bounds` would have to read the cost."""
        return self._bounds is None

    def measure_bounds(self) -> tuple[float, float]:
        """``(min, max)`` of the allowed entries read from the cost, forbidden ones counting as 0 (NaN if the cost
        holds NaN); cached as :meth:`bounds`. Without a mask the minimum comes from the rows' minima, kept for
        :meth:`row_minima` (two passes, as fast here as one ``aminmax`` and a later row minimum); with a mask one
        pass in row blocks (no masked copy)."""
        cost = self.cost.detach()
        if self.mask is None:
            low = float(self.row_minima().amin())  # NaN propagates
            high = float(cost.amax())
        else:
            mask = self.mask.expand_as(cost)
            ranges = [torch.aminmax(cost[..., i:j, :].masked_fill(mask[..., i:j, :], 0.0)) for i, j in self.row_blocks()]
            low = float(torch.stack([r.min for r in ranges]).amin())
            high = float(torch.stack([r.max for r in ranges]).amax())
        self._bounds = (low, high)
        return self._bounds

    def row_minima(self) -> Tensor:
        """``min_j C_ij`` over the allowed pairs, ``(..., n)`` (``inf`` for a row whose every pair is forbidden;
        NaN where a row holds NaN), detached; read once (with :meth:`measure_bounds` when it runs first)."""
        if self._row_minima is None:
            self._row_minima = self.cost.detach().amin(-1)
        return self._row_minima

    def transposed(self) -> Tensor:
        """A contiguous, detached ``C^T`` (..., m, n), computed once (used by the compiled column reduction)."""
        if self._transposed is None:
            self._transposed = self.cost.detach().transpose(-1, -2).contiguous()
        return self._transposed

    def with_tensors(self, tensors: Sequence[Tensor]) -> "DenseCost":
        out = DenseCost(tensors[0], bounds=self._bounds)
        out.mask, out._row_minima = self.mask, self._row_minima
        return out

    def matrix(self) -> Tensor:
        return self.cost


class PointCloud(Geometry):
    """Two point clouds ``x (n, d)`` and ``y (m, d)`` (or batched ``(B, n, d)``, ``(B, m, d)``) and a cost function.

    The cost is never stored: each block of rows is recomputed when a solver needs it, so a solve holds O((n+m)d)
    memory plus one block. ``cost`` is a name from :data:`otalign.costs.COSTS`, a :class:`~otalign.costs.Cost`, or a
    callable ``(x_rows (..., k, d), y (..., m, d)) -> (..., k, m)`` (used exactly as given, whatever its name).

    Blocks are larger than for dense costs (:attr:`block_elements` = 2^21): each one is a matrix product, which
    wants many rows.

    Example::

        geom = PointCloud(torch.randn(20_000, 64), torch.randn(20_000, 64), cost="sqeuclidean")
    """

    def __init__(self, x: Tensor, y: Optional[Tensor] = None, cost: Union[str, Cost, CostFn] = "sqeuclidean"):
        x = _points("x", x)
        y = x if y is None else _points("y", y)
        if x.dim() not in (2, 3) or y.dim() != x.dim():
            raise ValueError(f"x, y: expected both (n, d) or both (B, n, d), got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[-1] != y.shape[-1] or x.shape[:-2] != y.shape[:-2]:
            raise ValueError(f"x, y: batch and feature dimensions differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        self.block_elements = 4 * BLOCK_ELEMENTS
        self.x, self.y = x, y
        self.cost_function: Cost = get_cost(cost)
        self.n, self.m = x.shape[-2], y.shape[-2]
        self.batch = x.shape[0] if x.dim() == 3 else None

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.x, self.y)

    @property
    def cost_name(self) -> str:
        """The cost's name (``"custom"`` for a callable)."""
        return self.cost_function.name

    def cost_bound(self) -> Optional[float]:
        """An upper bound of ``max |C|`` from the points' norms (:meth:`otalign.costs.Cost.bound`), ``O((n + m) d)``;
        ``None`` for a custom callable."""
        return self.cost_function.bound(self.x, self.y)

    def block(self, tensors: Sequence[Tensor], start: int, stop: int) -> Tensor:
        x, y = tensors
        return self.cost_function(x[..., start:stop, :], y)

    def with_tensors(self, tensors: Sequence[Tensor]) -> "PointCloud":
        return PointCloud(tensors[0], tensors[1], self.cost_function)

    def logit_blocks(self, tensors, h_scaled, shift, axis, eps) -> Callable[[int, int], Tensor]:
        """For the inner-product costs, each block of logits is one matrix product of augmented coordinates
        ``[x beta/eps, row term, 1] @ [y, 1, column term]^T`` (``(..., k, d + 2) @ (..., d + 2, m)``); both
        operands are built once per pass, so a block costs its product and nothing of size m."""
        form = self.cost_function.form
        if form is None:
            return super().logit_blocks(tensors, h_scaled, shift, axis, eps)
        c0, alpha, beta = form.c0, form.alpha, form.beta
        x, y = form.prepare(*tensors)
        x_term = (c0 + alpha * (x * x).sum(-1)) / eps
        y_term = alpha * (y * y).sum(-1) / eps
        if axis == 1:
            row, col = -x_term - shift, h_scaled - y_term
        else:
            row, col = h_scaled - x_term, -y_term - shift
        left = torch.cat((x * (beta / eps), row.unsqueeze(-1), torch.ones_like(row).unsqueeze(-1)), dim=-1)
        right = torch.cat((y, torch.ones_like(col).unsqueeze(-1), col.unsqueeze(-1)), dim=-1).transpose(-1, -2)
        scratch = Scratch()

        def block(start: int, stop: int, cols: slice = slice(None)) -> Tensor:
            rows, columns = left[..., start:stop, :], right[..., cols]
            out = scratch.take(rows.shape[:-1] + columns.shape[-1:], rows)
            return torch.matmul(rows, columns, out=out)
        return block

    def tiles(self, block_rows: Optional[int] = None) -> Iterator[tuple[int, int, slice]]:
        """Row blocks when they are tall enough (or ``block_rows`` is given, or on a GPU, or for a cost callable);
        else, for the inner-product costs, tiles of
        :data:`TILE_ROWS` rows and the columns that fit :data:`BLOCK_ELEMENTS` x 2: each tile's matrix product then
        reads a cache-sized slice of the column operand instead of all of it, and its exponentials stay in cache."""
        if (block_rows is not None or self.device.type == "cuda" or self.block_rows() >= TILE_ROWS
                or self.cost_function.form is None):
            yield from super().tiles(block_rows)
            return
        cols = max(1, 2 * BLOCK_ELEMENTS // (TILE_ROWS * (self.batch or 1)))
        for start in range(0, self.n, TILE_ROWS):
            for col in range(0, self.m, cols):
                yield start, min(start + TILE_ROWS, self.n), slice(col, min(col + cols, self.m))


def affine_logits(
    cost: Tensor, h_scaled: Tensor, shift: Tensor, axis: int, eps: float, start: int, stop: int,
    scratch: Optional["Scratch"] = None,
) -> Tensor:
    """``(h - C)/eps - shift`` for a cost block (see :meth:`Geometry.logit_blocks`): a fresh tensor, or ``scratch``'s
    memory (overwritten by the next block) outside autograd."""
    if axis == 1:
        h_part, shift_part = h_scaled.unsqueeze(-2), shift[..., start:stop].unsqueeze(-1)
    else:
        h_part, shift_part = h_scaled[..., start:stop].unsqueeze(-1), shift.unsqueeze(-2)
    shape = _broadcast(cost.shape, h_part.shape, shift_part.shape)
    out = None if scratch is None else scratch.take(shape, cost)
    return torch.sub(h_part, cost, alpha=1.0 / eps, out=out).sub_(shift_part)


def _broadcast(*shapes: Sequence[int]) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` for concrete shapes, in plain Python (it runs once per block of every half-step:
    the torch version costs more than a small block's arithmetic)."""
    rank = max(len(shape) for shape in shapes)
    out = [1] * rank
    for shape in shapes:
        for i, size in enumerate(shape, rank - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    raise ValueError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = size
    return tuple(out)


class Scratch:
    """One reusable stretch of memory for the blocks of a pass. A fresh block per tile (megabytes) costs page
    faults comparable to the tile's arithmetic; the blocks of a pass are used one at a time, so they can share.
    Only outside autograd (where ``out=`` tensors are allowed); :meth:`take` returns ``None`` inside."""

    def __init__(self):
        self.flat: Optional[Tensor] = None

    def take(self, shape: Sequence[int], like: Tensor) -> Optional[Tensor]:
        """A ``shape`` view of the shared memory (dtype and device of ``like``), or ``None`` under autograd."""
        if torch.is_grad_enabled():
            return None
        size = math.prod(shape)
        flat = self.flat
        if flat is None or flat.numel() < size or flat.dtype != like.dtype or flat.device != like.device:
            flat = self.flat = like.new_empty(size)
        return flat[:size].view(tuple(shape))


def _points(name: str, value) -> Tensor:
    """A point cloud as a tensor (:func:`otalign.arrays.as_tensor`: NumPy, lists and pandas accepted); integer
    coordinates given as arrays or lists are read as floats of the default dtype (a tensor keeps its dtype, which
    the problem checks)."""
    if isinstance(value, Tensor):
        return as_tensor(name, value)
    points = as_tensor(name, value)
    return points if points.is_floating_point() or points.is_complex() else points.to(torch.get_default_dtype())


def as_geometry(cost: Union[Tensor, Geometry]) -> Geometry:
    """Wrap a cost tensor in a :class:`DenseCost`; pass geometries through."""
    if isinstance(cost, Geometry):
        return cost
    if isinstance(cost, Tensor):
        return DenseCost(cost)
    raise TypeError(f"cost: expected a tensor (n, m) / (B, n, m) or a Geometry, got {type(cost).__name__}")


