"""Ground costs of the domain-adaptation estimators: metric, normalisation, and the semi-supervised label cost.

Rows are source samples, columns target samples: ``C_ij = c(xs_i, xt_j)``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from .. import costs
from .arrays import MISSING_LABEL

Metric = Union[str, Callable[[Tensor, Tensor], Tensor]]

#: Cost normalisations (POT's ``norm=``): divide by the median or the max of the fitted cost, or ``log(1 + C)``,
#: ``log(1 + log(1 + C))``.
NORMS = ("median", "max", "log", "loglog")


def check_metric(metric: Metric) -> Metric:
    if callable(metric) or metric == "euclidean" or metric in costs.COSTS:
        return metric
    raise ValueError(f"metric: expected a callable (x, y) -> (n, m) or one of "
                     f"{sorted(set(costs.COSTS) | {'euclidean'})}, got {metric!r}")


def check_norm(norm: Optional[str]) -> Optional[str]:
    if norm is None or norm in NORMS:
        return norm
    raise ValueError(f"norm: expected None or one of {NORMS}, got {norm!r}")


def ground_cost(x: Tensor, y: Tensor, metric: Metric) -> Tensor:
    """``C (n, m)`` between ``x (n, d)`` and ``y (m, d)``. ``"euclidean"`` is the exact ``sqrt`` of the clamped
    squared distance (POT's), the other names are :data:`otalign.costs.COSTS`."""
    if metric == "euclidean":
        return costs.sqeuclidean(x, y).sqrt()
    cost = costs.get_cost(metric)(x, y)
    if not isinstance(cost, Tensor) or cost.shape != (x.shape[0], y.shape[0]):
        got = tuple(cost.shape) if isinstance(cost, Tensor) else type(cost).__name__
        raise ValueError(f"metric: expected a cost of shape {(x.shape[0], y.shape[0])}, got {got}")
    if not bool(torch.isfinite(cost).all()):
        raise ValueError("metric: the cost between the samples is not finite")
    return cost


def median(c: Tensor) -> Tensor:
    """The median of all entries, the mean of the two middle ones for an even count (NumPy's rule)."""
    flat = c.flatten()
    k = flat.numel()
    low = flat.kthvalue((k + 1) // 2).values
    return low if k % 2 else (low + flat.kthvalue(k // 2 + 1).values) / 2


def normalisation_value(c: Tensor, norm: Optional[str]) -> Optional[Tensor]:
    """The divisor that ``"median"`` / ``"max"`` read off the fitted cost (``None`` for the other norms)."""
    if norm == "median":
        value = median(c)
    elif norm == "max":
        value = c.max()
    else:
        return None
    if not float(value) > 0:
        raise ValueError(f"norm: the {norm} of the cost is {float(value):g}; cannot normalise by it")
    return value


def normalise(c: Tensor, norm: Optional[str], value: Optional[Tensor]) -> Tensor:
    """``C`` normalised by ``norm`` (``value`` from :func:`normalisation_value` on the fitted cost)."""
    if norm in ("median", "max"):
        return c / value
    if norm == "log":
        return torch.log1p(c)
    if norm == "loglog":
        return torch.log1p(torch.log1p(c))
    return c


def label_cost(c: Tensor, ys: Tensor, yt: Tensor, limit_max: float) -> tuple[Tensor, Optional[Tensor]]:
    """The semi-supervised cost: pairs whose source and target are both labelled (label != -1) with different
    labels cost ``max(C_ij, limit_max * max(C))``; with ``limit_max = inf`` they are forbidden (returned as a
    ``mask``, True = no mass). Returns ``(cost, mask)``, ``mask`` None for a finite ``limit_max``."""
    mismatch = (ys[:, None] != yt[None, :]) & (ys[:, None] != MISSING_LABEL) & (yt[None, :] != MISSING_LABEL)
    if math.isinf(limit_max):
        rows, cols = mismatch.all(1), mismatch.all(0)
        if bool(rows.any()) or bool(cols.any()):
            side, index = ("source", int(rows.nonzero()[0])) if bool(rows.any()) else ("target", int(cols.nonzero()[0]))
            raise ValueError(f"ys, yt: the labels leave {side} sample {index} no admissible partner (every pair of it "
                             "has different known labels); use a finite limit_max")
        return c, mismatch
    return torch.where(mismatch, torch.maximum(c, limit_max * c.max()), c), None


__all__ = ["Metric", "NORMS", "check_metric", "check_norm", "ground_cost", "label_cost", "median", "normalise",
           "normalisation_value"]
