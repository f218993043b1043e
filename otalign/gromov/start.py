"""Plans that are not the output of a linear solve: the outer loop's starting point.

Both classes offer the part of :class:`otalign.Plan`'s surface the linearisation uses (``matrix``, ``marginals``,
``apply``); :func:`plan_rows` reads rows of any of them, so two plans can be compared blockwise.
"""

from __future__ import annotations

from typing import Union

from torch import Tensor

from ..plan import Plan


class ProductPlan:
    """The independent coupling ``P = a b^T`` (``a (..., n)``, ``b (..., m)``), never materialised."""

    def __init__(self, a: Tensor, b: Tensor):
        self.a, self.b = a, b

    @property
    def matrix(self) -> Tensor:
        return self.a.unsqueeze(-1) * self.b.unsqueeze(-2)

    @property
    def marginals(self) -> tuple[Tensor, Tensor]:
        return self.a * self.b.sum(-1, keepdim=True), self.b * self.a.sum(-1, keepdim=True)

    def apply(self, x: Tensor, axis: int = 1) -> Tensor:
        """``P @ x`` (axis=1, ``x (..., m, k)``) or ``P^T @ x`` (axis=0, ``x (..., n, k)``)."""
        outer, inner = (self.a, self.b) if axis == 1 else (self.b, self.a)
        return outer.unsqueeze(-1) * (inner.unsqueeze(-2) @ x)

    def rows(self, start: int, stop: int) -> Tensor:
        return self.a[..., start:stop].unsqueeze(-1) * self.b.unsqueeze(-2)


class MatrixPlan:
    """A plan given as a matrix ``(..., n, m)`` (a user's starting plan, POT's ``G0``)."""

    def __init__(self, matrix: Tensor):
        self.matrix = matrix

    @property
    def marginals(self) -> tuple[Tensor, Tensor]:
        return self.matrix.sum(-1), self.matrix.sum(-2)

    def apply(self, x: Tensor, axis: int = 1) -> Tensor:
        return self.matrix @ x if axis == 1 else self.matrix.transpose(-1, -2) @ x

    def rows(self, start: int, stop: int) -> Tensor:
        return self.matrix[..., start:stop, :]


AnyPlan = Union[Plan, ProductPlan, MatrixPlan]


def plan_rows(plan: AnyPlan, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of the plan, ``(..., stop - start, m)``."""
    if isinstance(plan, Plan):
        if plan.explicit is not None:
            return plan.explicit[..., start:stop, :]
        return plan.problem.log_plan_block(plan.f, plan.g, start, stop).exp_()
    return plan.rows(start, stop)
