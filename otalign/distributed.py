"""Optimal transport beyond one process: the rows of a problem split across the ranks of a process group.

A :class:`ShardedGeometry` wraps this rank's block of rows of a cost (a :class:`~otalign.geometry.DenseCost` of
shape ``(n_r, m)``, or a :class:`~otalign.geometry.PointCloud` with ``x`` this rank's ``(n_r, d)`` rows and ``y``
all ``(m, d)`` columns). A :class:`~otalign.Problem` built on it takes this rank's slice ``a (n_r,)`` of the row
masses and all of ``b (m,)``, and the ordinary solvers (``"sinkhorn"``, ``"unbalanced"``) solve the global problem:

* row half-steps (one soft-min per row) only touch local rows;
* column half-steps reduce over every rank's rows: the soft-min all-reduces the per-column maximum, then the sum of
  exponentials (:meth:`ShardedGeometry.reduce_rows`); the column potential ``g (m,)`` is the same on every rank;
* stopping criteria and every global quantity of the :class:`~otalign.Plan` (column marginals, marginal errors,
  mass, value, value_linear, dual value) are all-reduced; ``plan.f``, ``plan.matrix`` and the row marginals are this
  rank's rows.

Every rank must make the same calls in the same order (the solvers do), and every rank must run ``backward``.

Gradients follow the convention of :func:`otalign.losses.gather.gather`: what is differentiated is the *sum
over ranks* of the scalars the ranks backpropagate. So the backward of a quantity reduced over rows (a column
soft-min, ``plan.value``) all-reduces the incoming gradient, and reaches every rank's rows. If every rank
backpropagates the same global scalar (e.g. ``plan.value``), each rank's gradients are ``world_size`` times its
share of the single-process gradient: DDP's averaging of parameter gradients divides that out, or backpropagate
``plan.value / world_size``. A tensor that every rank holds in full (``y``, ``b``) receives this rank's share of its
gradient; the shares sum (``all_reduce``) to the full gradient.

``grad="implicit"`` works too: the conjugate-gradient solve of :mod:`otalign.implicit` uses the same reductions.
The ``"proximal"`` solver runs sharded as well; ``"pot"`` and ``"geomloss"`` need all rows and refuse. The
contrastive losses use this module with ``gather_distributed=True`` (:mod:`otalign.losses.gather`).

Inputs are agreed on before any data moves (:func:`agree`): a rank with no rows, NaNs, another ``m``, ``d``, dtype
or ``eps`` makes every rank raise the same error naming the argument and the rank, instead of leaving its peers
blocked in a collective.

Example (``torchrun --nproc_per_node=2 script.py``)::

    dist.init_process_group("gloo")
    rows = otalign.distributed.local_rows(x.shape[0])          # this rank's slice of the global rows
    geom = ShardedGeometry(PointCloud(x[rows], y))
    plan = otalign.solve(otalign.Problem(geom, eps=0.1))        # a = 1/n_global on each local row
    plan.value, plan.g                                          # global, the same on every rank
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import Tensor

from .geometry import Geometry, PointCloud, as_geometry

REDUCTIONS = ("sum", "max", "logsumexp")


def local_rows(n: int, group: Optional[dist.ProcessGroup] = None) -> slice:
    """This rank's contiguous share of ``n`` rows: ``n // R`` each, the first ``n % R`` ranks one more."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the backward sums the incoming gradients over ranks too (sum-over-ranks convention)."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        out = x.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        total = grad.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return total, None


def all_reduce_max(x: Tensor, group=None) -> Tensor:
    """Element-wise maximum over ranks (no gradient)."""
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
    return out


def all_reduce_sum(x: Tensor, group=None) -> Tensor:
    """Element-wise sum over ranks, differentiable (the backward all-reduces the gradient)."""
    return _AllReduceSum.apply(x, group)


# --------------------------------------------------------------------------- agreeing before any data collective
class DistributedInputError(ValueError):
    """Raised on every rank when some rank's inputs are invalid or inconsistent with its peers'."""


def agree(error: Optional[BaseException], facts: dict[str, Any], group=None) -> list[dict[str, Any]]:
    """One small ``all_gather`` of every rank's status: its validation ``error`` (or ``None``) and ``facts`` that
    must be equal on all ranks (e.g. ``{"d": 16, "dtype": "torch.float32"}``). Raises the same
    :class:`DistributedInputError` on every rank if any rank failed or any fact differs, naming the argument and the
    rank(s); otherwise returns every rank's facts (rank order). ``facts`` keys ending in ``"*"`` are gathered but
    may differ (e.g. local sizes)."""
    status = (None if error is None else f"{error}", facts)
    world = dist.get_world_size(group)
    records: list = [None] * world
    dist.all_gather_object(records, status, group=group)
    failures = [f"rank {r}: {message}" for r, (message, _) in enumerate(records) if message is not None]
    if failures:
        raise DistributedInputError("; ".join(failures)) from error
    for key in facts:
        if key.endswith("*"):
            continue
        values = [record[1].get(key) for record in records]
        if any(value != values[0] for value in values):
            listing = ", ".join(f"rank {r}: {value}" for r, value in enumerate(values))
            raise DistributedInputError(f"{key}: must be the same on every rank, got {listing}")
    return [record[1] for record in records]


@contextlib.contextmanager
def agreement(facts: dict[str, Any], group=None) -> Iterator[list]:
    """Run a block of local checks; then :func:`agree` on its outcome (every rank raises if one failed).

    Example::

        with agreement({"d": z.shape[1]}) as peers:
            check_embeddings(z)          # may raise on this rank only
        sizes = [p["n*"] for p in peers]  # filled in after the block
    """
    peers: list = []
    error: Optional[BaseException] = None
    try:
        yield peers
    except Exception as caught:  # noqa: BLE001 - any local failure must reach the peers before anyone raises
        error = caught
    peers.extend(agree(error, facts, group))


# --------------------------------------------------------------------------- the sharded geometry
class ShardedGeometry(Geometry):
    """This rank's rows of a cost whose rows are split across the ranks of ``group`` (module docstring).

    Args:
        local: this rank's ``(n_r, m)`` rows: a :class:`~otalign.geometry.Geometry` or a cost tensor (wrapped in a
            :class:`~otalign.geometry.DenseCost`). Columns (``m``, and ``y`` for point clouds) are global and must
            be the same on every rank. The ranks' rows are disjoint and together are all rows (in any order;
            :attr:`row_offset` assumes contiguous blocks in rank order, as :func:`local_rows` hands out).
        group: the process group (default: the world).

    Construction is collective (one ``all_gather`` of the local shapes): every rank must build its geometry. A rank
    with no rows, or an ``m``, batch, feature size, dtype or cost kind that differs from its peers', makes every rank
    raise :class:`DistributedInputError`.

    Attributes:
        n: this rank's rows; ``n_global`` all ranks' rows; ``row_offset`` the global index of local row 0;
        shards: the number of ranks.

    Example::

        geom = ShardedGeometry(PointCloud(x[local_rows(len(x))], y, cost="sqeuclidean"))
    """

    def __init__(self, local: Union[Geometry, Tensor], group: Optional[dist.ProcessGroup] = None):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("ShardedGeometry: torch.distributed is not initialised (call init_process_group)")
        with agreement(_facts(local), group) as peers:
            if isinstance(local, ShardedGeometry):
                raise TypeError("local: is already a ShardedGeometry")
            if isinstance(local, Tensor) and local.dim() not in (2, 3):
                raise ValueError(f"local: expected a cost (n_r, m) or (B, n_r, m), got shape {tuple(local.shape)}")
            local = as_geometry(local)
            if local.n < 1:
                raise ValueError(f"local: this rank holds no rows (shape {local.batch_shape + (local.n, local.m)})")
        counts = [int(p["rows*"]) for p in peers]
        rank = dist.get_rank(group)
        self._set(local, group, counts, rank)

    def _set(self, local: Geometry, group, counts: Sequence[int], rank: int) -> None:
        self.local, self.group = local, group
        self.row_counts, self.rank = list(counts), rank
        self.n, self.m, self.batch = local.n, local.m, local.batch
        self.block_elements = local.block_elements
        self.shards = len(self.row_counts)
        self.row_offset = sum(self.row_counts[:rank])

    @classmethod
    def from_row_counts(cls, local: Geometry, row_counts: Sequence[int], group=None) -> "ShardedGeometry":
        """Skip the constructor's collective when the ranks have already agreed on their row counts
        (``row_counts`` in rank order; this rank's must be ``local.n``)."""
        rank = dist.get_rank(group)
        if int(row_counts[rank]) != local.n:
            raise ValueError(f"row_counts: rank {rank} holds {local.n} rows, not {row_counts[rank]}")
        out = object.__new__(cls)
        out._set(local, group, [int(c) for c in row_counts], rank)
        return out

    @property
    def structured(self) -> bool:
        return self.local.structured

    @property
    def masked(self) -> bool:
        return self.local.masked

    @property
    def process_local(self) -> Geometry:
        return self.local

    @property
    def n_global(self) -> int:
        return sum(self.row_counts)

    def with_local(self, local: Geometry) -> "ShardedGeometry":
        """The same sharding over another local geometry with the same shape (no collective)."""
        out = object.__new__(ShardedGeometry)
        out._set(local, self.group, self.row_counts, self.rank)
        return out

    def tensors(self) -> tuple[Tensor, ...]:
        return self.local.tensors()

    def block(self, tensors: Sequence[Tensor], start: int, stop: int) -> Tensor:
        return self.local.block(tensors, start, stop)

    def logit_blocks(self, tensors, h_scaled, shift, axis, eps):
        return self.local.logit_blocks(tensors, h_scaled, shift, axis, eps)

    def tiles(self, block_rows=None):
        return self.local.tiles(block_rows)

    def with_tensors(self, tensors: Sequence[Tensor]) -> "ShardedGeometry":
        return self.with_local(self.local.with_tensors(tensors))

    def matrix(self) -> Tensor:
        """This rank's rows of the cost, ``(..., n_r, m)``."""
        return self.local.matrix()

    def reduce_rows(self, partial: Tensor, op: str = "sum") -> Tensor:
        """Combine every rank's ``partial`` reduction over its rows: ``"sum"`` (differentiable, the backward
        all-reduces), ``"max"`` (no gradient) or ``"logsumexp"`` (``partial`` is the local log-sum-exp;
        differentiable)."""
        if op == "sum":
            return all_reduce_sum(partial, self.group)
        if op == "max":
            return all_reduce_max(partial, self.group)
        if op == "logsumexp":
            top = all_reduce_max(partial, self.group)
            top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
            return top + all_reduce_sum(torch.exp(partial - top), self.group).log()
        raise ValueError(f"op: expected one of {REDUCTIONS}, got {op!r}")

    def __repr__(self) -> str:
        return f"ShardedGeometry({type(self.local).__name__}, rows {self.row_offset}:{self.row_offset + self.n} of " \
               f"{self.n_global}, rank {self.rank} of {self.shards})"


def _facts(local) -> dict[str, Any]:
    """What must agree between ranks about a local geometry (and this rank's row count, which may differ)."""
    if not isinstance(local, (Geometry, Tensor)):
        return {"local": "invalid", "rows*": 0}
    geometry = as_geometry(local) if isinstance(local, Tensor) and local.dim() >= 2 else local
    if isinstance(geometry, Tensor):
        return {"local": f"tensor of shape {tuple(geometry.shape)}", "rows*": 0}
    facts = {
        "kind": type(geometry).__name__,
        "columns (m)": geometry.m,
        "batch": geometry.batch,
        "dtype": str(geometry.dtype),
        "device type": geometry.device.type,
        "rows*": geometry.n,
    }
    if isinstance(geometry, PointCloud):
        facts["features (d)"] = geometry.x.shape[-1]
        facts["cost"] = repr(geometry.cost_function)
    return facts


def agree_solve(problem, solver: Any, options: dict[str, Any]) -> None:
    """Agree, before the first collective of a sharded solve, on everything the ranks must share; a no-op unless the
    problem's geometry is a :class:`ShardedGeometry`.

    Agreed: the global shape (batch, total rows, ``m``), dtype, ``eps``, ``rho_a``, ``rho_b``, the reference, a
    float64 fingerprint of the column side every rank holds in full (``b``, and ``y`` for a point cloud: the sum
    and a position-weighted sum, to 10 significant digits), the solver (its name, or the class and every option of
    an instance, nested solvers included) and ``options``: the arguments of :func:`otalign.solve` (``max_iter``,
    ``tol``, ``grad``, the solver's constructor options; tensors by fingerprint; for ``init`` only the column
    potential ``g``, since ``f`` is this rank's rows). A mismatch raises the same
    :class:`DistributedInputError` on every rank, naming the argument and every rank's value, instead of a silently
    different answer or a collective that aborts. One ``all_gather_object`` of small descriptions."""
    geometry = problem.geometry
    if not isinstance(geometry, ShardedGeometry):
        return
    facts: dict[str, Any] = {
        "problem shape (batch, rows, columns)": problem.batch_shape + (geometry.n_global, geometry.m),
        "dtype": str(problem.dtype),
        "eps": repr(problem.eps), "rho_a": repr(problem.rho_a), "rho_b": repr(problem.rho_b),
        "reference": problem.reference,
        "b": _describe(problem.b),
        "solver": _describe(solver),
    }
    if isinstance(geometry.local, PointCloud):
        facts["y"] = _describe(geometry.local.y)
        facts["cost"] = _describe(geometry.local.cost_function)
    for name, value in sorted(options.items()):
        if name == "init" and value is not None:
            value = getattr(value, "g", None) if not isinstance(value, (tuple, list)) else value[-1]
            name = "init (column potential g)"
        facts[name] = _describe(value)
    agree(None, facts, geometry.group)


def _describe(value: Any, depth: int = 0) -> Any:
    """A description of ``value`` that is equal on two ranks exactly when the values agree: plain values as they
    are (floats by ``repr``, so NaN equals NaN), tensors by shape, dtype and a float64 fingerprint, functions by
    qualified name, other objects by class and public attributes."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Tensor):
        return f"tensor {tuple(value.shape)} {value.dtype} fingerprint {_fingerprint(value)}"
    if isinstance(value, (tuple, list)):
        return tuple(_describe(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return tuple((str(k), _describe(v, depth + 1)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    attributes = {k: v for k, v in vars(value).items() if not k.startswith("_")} if hasattr(value, "__dict__") else {}
    if depth > 3 or not attributes:
        return type(value).__qualname__
    return (type(value).__qualname__, _describe(attributes, depth + 1))


def _fingerprint(x: Tensor) -> str:
    """``sum x`` and ``sum w x`` in float64 with fixed weights ``w_k = frac(0.618 k) + 0.5`` (a permutation or a
    changed entry moves the second), to 10 significant digits."""
    with torch.no_grad():
        flat = x.detach().reshape(-1).to(torch.float64)
        weights = torch.arange(flat.numel(), dtype=torch.float64, device=flat.device).mul_(0.6180339887).frac_()
        pair = torch.stack([flat.sum(), (flat * (weights + 0.5)).sum()]).tolist()
    return "{:.10e} {:.10e}".format(*pair)


__all__ = [
    "DistributedInputError",
    "ShardedGeometry",
    "agree",
    "agree_solve",
    "agreement",
    "all_reduce_max",
    "all_reduce_sum",
    "local_rows",
]
