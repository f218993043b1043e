"""Maps and label propagation read off a fitted coupling ``P (n, m)`` (rows: source samples, columns: target).

* :func:`barycentric`: ``T(xs_i) = sum_j P_ij xt_j / sum_j P_ij`` (a row without mass maps to 0, as POT).
* :func:`nearest_displacement`: out-of-sample map of Ferradans et al. (2014): a new point moves by the
  displacement of its nearest fitted point (Euclidean distance, first index on ties).
* :func:`entropic_map`: the entropic map of Pooladian & Niles-Weed (2021): ``T(x) = sum_j w_j(x) xt_j`` with
  ``w(x) = softmax_j(h_j - c(x, xt_j) / eps)`` and ``h_j = g_j / eps + log b_j`` (the target-side log scaling);
  on a fitted point it is the barycentric map of the plan.
* :func:`propagate_labels`: ``L_jc = sum_{i: y_i = c} P_ij / sum_i P_ij`` (Redko et al., 2019; a column without
  mass gets 0).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .. import costs
from .arrays import one_hot

#: Rows per block of the out-of-sample maps: a block's cost matrix stays near 2^22 entries.
_BLOCK_ENTRIES = 1 << 22


def _blocks(n: int, m: int):
    step = max(1, _BLOCK_ENTRIES // max(m, 1))
    return ((start, min(start + step, n)) for start in range(0, n, step))


def _normalise_rows(p: Tensor) -> Tensor:
    total = p.sum(1, keepdim=True)
    return torch.where(total > 0, p / torch.where(total > 0, total, 1), 0)


def barycentric(plan: Tensor, y: Tensor) -> Tensor:
    """``(n, d)``: every row of ``plan (n, m)`` normalised to sum 1, applied to ``y (m, d)``."""
    return _normalise_rows(plan) @ y


def nearest_displacement(x: Tensor, fitted: Tensor, mapped: Tensor) -> Tensor:
    """``mapped[k] + x - fitted[k]`` with ``k`` the nearest row of ``fitted (n, d)`` to each row of ``x (q, d)``."""
    out = torch.empty_like(x)
    for start, stop in _blocks(x.shape[0], fitted.shape[0]):
        k = costs.sqeuclidean(x[start:stop], fitted).argmin(1)
        out[start:stop] = mapped[k] + x[start:stop] - fitted[k]
    return out


def entropic_map(x: Tensor, support: Tensor, log_scaling: Tensor, eps: float,
                 cost: Callable[[Tensor], Tensor]) -> Tensor:
    """``(q, d)``: ``softmax_j(log_scaling_j - cost(x)_j / eps) @ support`` for each row of ``x (q, d)``;
    ``cost`` maps a block of rows ``(k, d)`` to its cost ``(k, m)`` against ``support (m, d)``."""
    out = x.new_empty((x.shape[0], support.shape[1]))
    for start, stop in _blocks(x.shape[0], support.shape[0]):
        logits = log_scaling[None, :] - cost(x[start:stop]) / eps
        out[start:stop] = torch.softmax(logits, dim=1) @ support
    return out


def propagate_labels(plan: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(classes (L,), scores (m, L))``: the label mass of each column of ``plan (n, m)`` for ``labels (n,)``,
    normalised by the column's mass. ``classes`` are the sorted distinct labels."""
    classes, masks = one_hot(labels, plan.dtype)
    return classes, _normalise_rows(plan.T) @ masks


__all__ = ["barycentric", "entropic_map", "nearest_displacement", "propagate_labels"]
