"""Gathering a batch across processes for losses computed on the global batch.

With ``gather_distributed=True`` every rank gathers all ranks' embeddings, solves the plan of the *global* batch and
returns the loss of its *own* anchors (rows). The gradient has to reach each rank's inputs from every rank's loss,
because rank r's embeddings are negatives (columns, and rows of the balanced plan) in every other rank's loss.
:func:`gather` does that:

* forward: ``all_gather`` of the local tensors, concatenated in rank order (first dims may differ between ranks);
* backward: ``all_reduce(sum)`` of the incoming gradient of the whole gathered tensor, then this rank's slice.

So on rank r the gradient of its local input is ``d(sum_r' L_r') / d z_r``. DDP then *averages* parameter gradients
over the R ranks, which is the gradient of ``(1/R) sum_r' L_r'``; when ``L_r'`` is rank r''s share of the global
mean (see :func:`otalign.losses.base.reduce`), that is exactly the gradient of the single-process loss on the
concatenated batch. Every rank must run the backward pass (the all_reduce is collective).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


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
