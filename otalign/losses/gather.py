"""Distributed losses without redundancy: each rank computes only its own anchors' rows of the plan.

With ``gather_distributed=True`` every rank gathers all ranks' embeddings once (the *candidates*, the columns of the
plan) and keeps its own embeddings as *anchors* (rows). The plan of the global batch is then solved sharded
(:class:`otalign.distributed.ShardedGeometry`): rank r holds the ``(V N_r, V N_global)`` block of the cost and of
the plan, row half-steps are local and column half-steps all-reduce. Memory per rank is O(N_global N_r), not
O(N_global^2), and no rank repeats another's work.

Gradients reach each rank's inputs from every rank's loss: :func:`gather` (forward ``all_gather``, backward
``all_reduce(sum)`` of the gradient of the gathered tensor, then this rank's slice) for the candidates, and the
sharded soft-min's backward for the column reductions. So on rank r the gradient of its local input is
``d(sum_r' L_r') / d z_r``; DDP then *averages* parameter gradients over the R ranks, the gradient of
``(1/R) sum_r' L_r'``. When ``L_r'`` is rank r''s share of the global mean (see :func:`otalign.losses.base.reduce`),
that is exactly the gradient of the single-process loss on the concatenated batch. Every rank must run the
backward pass (the reductions are collective).

Before any data moves the ranks agree on their inputs (:func:`agreed_local_sizes`): a rank with no samples, NaNs,
labels where its peers have none, another feature size, number of views or dtype makes every rank raise the same
error naming the argument and the rank, instead of leaving its peers blocked in a collective.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from ..distributed import agreement, all_reduce_max, all_reduce_sum

T = TypeVar("T")


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_sizes(n: int, device: torch.device) -> list[int]:
    """The first-dimension size ``n`` of every rank, in rank order (one small collective)."""
    local = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def _all_gather_concat(x: Tensor, sizes: list[int]) -> Tensor:
    """Concatenation along dim 0 of every rank's ``x`` (padded to the largest size for the collective)."""
    largest = max(sizes)
    if x.shape[0] < largest:
        x = torch.cat([x, x.new_zeros((largest - x.shape[0],) + tuple(x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], this_rank: int) -> Tensor:
        ctx.start = sum(sizes[:this_rank])
        ctx.size = sizes[this_rank]
        return _all_gather_concat(x, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.start : ctx.start + ctx.size], None, None


def gather(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """Differentiable all_gather: every rank's ``x`` (``(n_r, ...)``) concatenated in rank order, ``(sum n_r, ...)``.

    Args:
        x: this rank's tensor; the trailing dims must agree across ranks, the first may differ.
        sizes: every rank's ``n_r`` if already known (else gathered with :func:`gather_sizes`).

    Returns ``x`` itself when no multi-rank process group is running. Integer tensors (labels) are gathered the
    same way, without gradient.

    Example::

        >>> z_all = gather(z)          # (sum of the ranks' batch sizes, d)
    """
    if not is_distributed():
        return x
    sizes = gather_sizes(x.shape[0], x.device) if sizes is None else sizes
    if not x.is_floating_point():
        return _all_gather_concat(x, sizes)
    return _Gather.apply(x, sizes, rank())


# --------------------------------------------------------------------------- agreeing, and the sharded layout
def agreed_local_sizes(views: Sequence, labels, target, check: Callable[[], T]) -> tuple[T, list[int]]:
    """Run this rank's input checks ``check()`` and agree with the peers on the outcome and on what must match
    (number of views, feature size, dtype, device type, whether labels / a target are given); every rank raises if
    one rank's checks failed or a fact differs. Returns ``check()``'s result and every rank's batch size."""
    with agreement(_facts(views, labels, target)) as peers:
        result = check()
    return result, [int(p["samples*"]) for p in peers]


def sharded_batch(loss, views: Sequence[Tensor], labels: Optional[Tensor], target: Optional[Tensor]) -> tuple:
    """The fields of a :class:`~otalign.losses.base.Batch` for ``loss`` (a ``ContrastiveLoss``) on this rank: agree
    with the peers on the inputs, gather the candidates, keep the local anchors and build only their target rows."""
    (stacked, labels), sizes = agreed_local_sizes(views, labels, target,
                                                  lambda: loss._check_inputs(views, labels, target))
    n_views, n_local, n_global = len(views), sizes[rank()], sum(sizes)
    per_sample = stacked.reshape(n_views, n_local, -1).transpose(0, 1).reshape(n_local, -1)
    gathered = gather(per_sample, sizes).reshape(n_global, n_views, -1)
    candidates = gathered.transpose(0, 1).reshape(n_views * n_global, -1)
    rows = anchor_rows(sizes, n_views, stacked.device)
    if target is not None:  # the global matrix, checked on every rank with the outcome agreed on
        full, _ = agreed_local_sizes(views, labels, target, lambda: loss.build_target(
            n_global, n_views, None, target, stacked.dtype, stacked.device, True))
        built = full[rows]
    else:
        keys = torch.arange(n_global, device=stacked.device) if labels is None else gather(labels, sizes)
        built = same_key_rows(keys.repeat(n_views), rows, stacked.dtype)
    return candidates, built, n_views, rows, len(sizes), stacked, [n_views * size for size in sizes]


def _facts(views: Sequence, labels, target) -> dict:
    first = views[0] if len(views) and isinstance(views[0], Tensor) else None
    matrix = first is not None and first.dim() == 2
    return {
        "views": len(views),
        "d (feature size)": first.shape[1] if matrix else None,
        "dtype": None if first is None else str(first.dtype),
        "device type": None if first is None else first.device.type,
        "labels given": labels is not None,
        "target": None if target is None else tuple(getattr(target, "shape", ())),
        "samples*": first.shape[0] if matrix else 0,
    }


def anchor_rows(sizes: Sequence[int], n_views: int, device: torch.device) -> Tensor:
    """Indices, in the gathered view-blocked batch ``(V N_global)``, of this rank's anchors (local order)."""
    n_global, start = sum(sizes), sum(sizes[: rank()])
    offsets = torch.arange(n_views, device=device) * n_global + start
    return (offsets[:, None] + torch.arange(sizes[rank()], device=device)).reshape(-1)


def self_pairs(rows: Optional[Tensor], n_rows: int, n_columns: int, device: torch.device) -> Tensor:
    """``(n_rows, n_columns)`` bool: the pairs (anchor, itself). ``rows``: the anchors' column indices (``None``:
    anchor i is column i)."""
    columns = torch.arange(n_columns, device=device)
    if rows is None:
        rows = torch.arange(n_rows, device=device)
    return rows[:, None] == columns[None, :]


def same_key_rows(keys: Tensor, rows: Tensor, dtype: torch.dtype) -> Tensor:
    """Rows ``rows`` of the target ``1[key_i = key_j], i != j`` over ``keys (V N_global,)``: ``(len(rows), V N)``."""
    out = keys[rows][:, None] == keys[None, :]
    return (out & ~self_pairs(rows, len(rows), len(keys), keys.device)).to(dtype)


def global_max(x: Tensor) -> Tensor:
    """The maximum of ``x`` over all ranks' entries, differentiable: the gradient reaches the entry that holds it
    (on the lowest such rank), from every rank's use of the result (sum-over-ranks convention)."""
    local = x.amax()
    top = all_reduce_max(local)
    holders = torch.zeros(world_size(), dtype=torch.float64, device=x.device)
    holders[rank()] = float(bool(local.detach() == top))
    holders = all_reduce_sum(holders)
    first = int(torch.nonzero(holders)[0])
    return all_reduce_sum(local * float(first == rank()))


def global_sum(x: Tensor) -> Tensor:
    """``x`` summed over ranks (no gradient needed: anchor weights)."""
    return all_reduce_sum(x.detach())
