"""Pairwise cost functions.

Every cost takes ``x`` of shape ``(..., n, d)`` and ``y`` of shape ``(..., m, d)`` and returns ``(..., n, m)``;
rows index ``x``, columns index ``y``. They are differentiable and are the functions a
:class:`~otalign.geometry.PointCloud` evaluates block by block.
"""

from __future__ import annotations

from typing import Callable, Union

from torch import Tensor

from .lookup import named_or_callable

CostFn = Callable[[Tensor, Tensor], Tensor]


def sqeuclidean(x: Tensor, y: Tensor) -> Tensor:
    """``C_ij = |x_i - y_j|^2`` (computed as ``|x|^2 + |y|^2 - 2 x.y``, clamped at 0)."""
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1).unsqueeze(-2)
    return (x2 + y2 - 2 * (x @ y.transpose(-1, -2))).clamp_min(0)


def half_sqeuclidean(x: Tensor, y: Tensor) -> Tensor:
    """``C_ij = |x_i - y_j|^2 / 2`` (geomloss's ``p=2`` convention)."""
    return sqeuclidean(x, y) / 2


def euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``C_ij = |x_i - y_j|`` (the p = 1 ground cost of W1). Smoothed at 0 so its gradient stays finite."""
    return (sqeuclidean(x, y) + 1e-12).sqrt()


def negative_cosine(x: Tensor, y: Tensor) -> Tensor:
    """``C_ij = -cos(x_i, y_j)``: the GCA paper's cost, so that ``exp(-C/eps) = exp(s/eps)`` with eps the temperature."""
    return -(_unit(x) @ _unit(y).transpose(-1, -2))


def cosine_distance(x: Tensor, y: Tensor) -> Tensor:
    """``C_ij = 1 - cos(x_i, y_j)`` in [0, 2]."""
    return 1 - _unit(x) @ _unit(y).transpose(-1, -2)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


COSTS: dict[str, CostFn] = {
    "sqeuclidean": sqeuclidean,
    "half_sqeuclidean": half_sqeuclidean,
    "euclidean": euclidean,
    "negative_cosine": negative_cosine,
    "cosine": cosine_distance,
}


def get_cost(cost: Union[str, CostFn]) -> CostFn:
    """Look a cost up by name (one of ``COSTS``) or pass a callable ``(x, y) -> (..., n, m)`` through."""
    return named_or_callable("cost", cost, COSTS)


def pairwise(x: Tensor, y: Tensor, cost: Union[str, CostFn] = "sqeuclidean") -> Tensor:
    """The dense cost matrix ``(..., n, m)`` between ``x (..., n, d)`` and ``y (..., m, d)``."""
    fn = get_cost(cost)
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a tensor (..., n, d), got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name}: expected shape (..., n, d), got {tuple(t.shape)}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x, y: feature dimensions differ ({x.shape[-1]} vs {y.shape[-1]})")
    return fn(x, y)
