"""Sub-batches of a batched :class:`~otalign.problem.Problem`: the problems of some batch elements, as one batch.

Used by solvers whose schedule is per batch element (``"proximal"``): elements that are at the same stage of their
schedule are solved together, and every element's result is the one a solve of that element alone would give.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .geometry import DenseCost
from .problem import Problem


def select(problem: Problem, index: Sequence[int]) -> Problem:
    """The batch elements ``index`` of ``problem`` (batched ``(B, n, m)``) as a problem of batch ``len(index)``.

    Shares eps, rho, the reference and the cost function with ``problem``. A dense cost gets its own mask (a
    per-element mask is indexed with the cost) and its own bounds, measured on the selected elements as a solve of
    those elements alone would measure them. Differentiable with respect to the selected tensors."""
    if not problem.batch_shape:
        raise ValueError("problem: select() needs a batched problem (B, n, m)")
    rows = torch.as_tensor(list(index), dtype=torch.long, device=problem.device)
    sub = problem.with_tensors([t.index_select(0, rows) for t in problem.geometry.tensors()],
                               problem.a.index_select(0, rows), problem.b.index_select(0, rows))
    geometry = sub.geometry
    local = getattr(geometry, "local", geometry)  # a sharded geometry wraps this rank's rows
    if isinstance(local, DenseCost):
        mask = local.mask
        if mask is not None and mask.dim() == 3:
            mask = mask.index_select(0, rows)
        fresh = DenseCost(local.cost, mask=mask)
        sub.geometry = geometry.with_local(fresh) if hasattr(geometry, "with_local") else fresh
    return sub


__all__ = ["select"]
