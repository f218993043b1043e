"""Pairwise costs, each a :class:`Cost` that carries its structure.

Every cost takes ``x`` of shape ``(..., n, d)`` and ``y`` of shape ``(..., m, d)`` and returns ``(..., n, m)``;
rows index ``x``, columns index ``y``. They are differentiable and are what a
:class:`~otalign.geometry.PointCloud` evaluates block by block.

A built-in cost knows more than its values, and the engine asks it, never its name:

* :attr:`Cost.form`: the inner-product form ``C_ij = c0 + alpha (|x_i|^2 + |y_j|^2) - beta <x_i, y_j>`` (on unit
  vectors when ``normalise``) of the squared-Euclidean and cosine costs, so that a block of soft-min logits is one
  matrix product;
* :meth:`Cost.factors`: ``C = A B^T`` (rank ``d + 2``, centred, one place for the soft-min, the low-rank solver and
  GW);
* :meth:`Cost.bound`: an upper bound of ``max |C|`` from the points' norms.

A user's callable is wrapped in :class:`CustomCost` whatever its ``__name__``: it has no form, no factors and no
bound, so the engine evaluates it exactly as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from torch import Tensor

CostFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class InnerProductForm:
    """``C_ij = c0 + alpha (|x_i|^2 + |y_j|^2) - beta <x_i, y_j>``, on unit vectors when ``normalise``."""

    c0: float
    alpha: float
    beta: float
    normalise: bool

    def prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The points the form is evaluated on: unit vectors when ``normalise``, else ``x`` and ``y`` themselves."""
        return (_unit(x), _unit(y)) if self.normalise else (x, y)


class Cost:
    """A pairwise cost ``(x (..., n, d), y (..., m, d)) -> (..., n, m)`` and what the engine may know about it.

    Subclasses implement :meth:`__call__`; built-in ones also set :attr:`form` (see the module docstring).
    """

    #: The name users pass (``PointCloud(x, y, cost=name)``); ``"custom"`` for a wrapped callable.
    name: str = "custom"
    #: The inner-product form, when the cost has one.
    form: Optional[InnerProductForm] = None
    #: ``p`` when the cost grows like ``|x - y|^p`` (2 for the squared-Euclidean costs, 1 for the Euclidean one): the
    #: exponent that turns a diameter into a cost scale; ``None`` when unknown.
    power: Optional[int] = None

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def factors(self, x: Tensor, y: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        """``(A (..., n, d + 2), B (..., m, d + 2))`` with ``A @ B^T = C`` (not clamped at 0), or ``None``.

        Squared distances are translation invariant: both clouds are first centred on the mean of their two means,
        which keeps ``|x|^2 + |y|^2 - 2 <x, y>`` from cancelling catastrophically for clouds far from the origin."""
        form = self.form
        if form is None:
            return None
        x, y = form.prepare(x, y)
        if form.alpha > 0:
            centre = (x.mean(-2, keepdim=True) + y.mean(-2, keepdim=True)) / 2
            x, y = x - centre, y - centre
        A = torch.cat((form.c0 + form.alpha * (x * x).sum(-1, keepdim=True), torch.ones_like(x[..., :1]),
                       -form.beta * x), dim=-1)
        B = torch.cat((torch.ones_like(y[..., :1]), form.alpha * (y * y).sum(-1, keepdim=True), y), dim=-1)
        return A, B

    def bound(self, x: Tensor, y: Tensor) -> Optional[float]:
        """An upper bound of ``max |C_ij|`` from the points' norms, ``O((n + m) d)``; ``None`` when unknown. It also
        bounds the terms the cost is computed from, so ``u * bound`` bounds its rounding error."""
        return None

    def lower_bound(self) -> Optional[float]:
        """A lower bound of the cost known without looking at the points (``None`` when unknown)."""
        return None

    @property
    def squared_distance_scale(self) -> Optional[float]:
        """``s`` when ``C = s |x - y|^2`` (1 for ``"sqeuclidean"``, 1/2 for ``"half_sqeuclidean"``), else ``None``."""
        form = self.form
        if form is None or form.normalise or form.c0 != 0 or form.beta != 2 * form.alpha:
            return None
        return form.alpha

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SqEuclidean(Cost):
    """``C_ij = |x_i - y_j|^2`` (computed as ``|x|^2 + |y|^2 - 2 x.y``, clamped at 0)."""

    name = "sqeuclidean"
    form = InnerProductForm(0.0, 1.0, 2.0, False)
    power = 2
    scale = 1.0

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1).unsqueeze(-2)
        return self.scale * (x2 + y2 - 2 * (x @ y.transpose(-1, -2))).clamp_min(0)

    def bound(self, x: Tensor, y: Tensor) -> float:
        with torch.no_grad():
            reach = float(x.detach().norm(dim=-1).max()) + float(y.detach().norm(dim=-1).max())
        return self.scale * reach * reach

    def lower_bound(self) -> float:
        return 0.0


class HalfSqEuclidean(SqEuclidean):
    """``C_ij = |x_i - y_j|^2 / 2`` (geomloss's ``p=2`` convention)."""

    name = "half_sqeuclidean"
    form = InnerProductForm(0.0, 0.5, 1.0, False)
    scale = 0.5


class Euclidean(Cost):
    """``C_ij = |x_i - y_j|`` (the p = 1 ground cost of W1). Smoothed at 0 so its gradient stays finite."""

    name = "euclidean"
    power = 1

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return (SQEUCLIDEAN(x, y) + 1e-12).sqrt()

    def bound(self, x: Tensor, y: Tensor) -> float:
        with torch.no_grad():
            return float(x.detach().norm(dim=-1).max()) + float(y.detach().norm(dim=-1).max())

    def lower_bound(self) -> float:
        return 0.0


class NegativeCosine(Cost):
    """``C_ij = -cos(x_i, y_j)``: the GCA paper's cost, so that ``exp(-C/eps) = exp(s/eps)`` with eps the
    temperature."""

    name = "negative_cosine"
    form = InnerProductForm(0.0, 0.0, 1.0, True)
    offset = 0.0

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.offset - _unit(x) @ _unit(y).transpose(-1, -2)

    def bound(self, x: Tensor, y: Tensor) -> float:
        return 1.0 + self.offset

    def lower_bound(self) -> float:
        return self.offset - 1.0


class CosineDistance(NegativeCosine):
    """``C_ij = 1 - cos(x_i, y_j)`` in [0, 2]."""

    name = "cosine"
    form = InnerProductForm(1.0, 0.0, 1.0, True)
    offset = 1.0


class CustomCost(Cost):
    """A user's callable ``(x (..., k, d), y (..., m, d)) -> (..., k, m)``, used exactly as given (whatever its
    name: a function called ``sqeuclidean`` is not replaced by the built-in formula)."""

    def __init__(self, fn: CostFn):
        self.fn = fn

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.fn(x, y)

    def __repr__(self) -> str:
        return f"CustomCost({getattr(self.fn, '__qualname__', type(self.fn).__name__)})"


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


SQEUCLIDEAN = SqEuclidean()
sqeuclidean = SQEUCLIDEAN
half_sqeuclidean = HalfSqEuclidean()
euclidean = Euclidean()
negative_cosine = NegativeCosine()
cosine_distance = CosineDistance()

COSTS: dict[str, Cost] = {
    cost.name: cost for cost in (sqeuclidean, half_sqeuclidean, euclidean, negative_cosine, cosine_distance)
}


def get_cost(cost: Union[str, Cost, CostFn]) -> Cost:
    """A :class:`Cost`: a built-in one by name (one of ``COSTS``), a :class:`Cost` itself, or a callable
    ``(x, y) -> (..., n, m)`` wrapped in :class:`CustomCost`."""
    if isinstance(cost, Cost):
        return cost
    if isinstance(cost, str):
        if cost in COSTS:
            return COSTS[cost]
        raise ValueError(f"cost: unknown cost {cost!r}; expected a callable or one of {sorted(COSTS)}")
    if callable(cost):
        return CustomCost(cost)
    raise ValueError(f"cost: unknown cost {cost!r}; expected a callable or one of {sorted(COSTS)}")


def pairwise(x: Tensor, y: Tensor, cost: Union[str, Cost, CostFn] = "sqeuclidean") -> Tensor:
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
