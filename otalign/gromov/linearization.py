"""The GW energy, its gradient (the linearised cost of each outer step) and the FGW objective.

With a loss that splits as ``L(s, t) = f1(s) + f2(t) - h1(s) h2(t)`` (Peyre, Cuturi, Solomon 2016, Prop. 1):

* square: ``f1(s) = s^2``, ``f2(t) = t^2``, ``h1(s) = s``, ``h2(t) = 2 t``;
* kl: ``f1(s) = s log s - s``, ``f2(t) = t``, ``h1(s) = s``, ``h2(t) = log t`` (floored at ``log 1e-18``, as POT),

the energy of a plan ``P (n, m)`` with marginals ``r = P 1``, ``c = P^T 1`` is

    E(P) = <u, r> + <v, c> - <h1(C_x) P h2(C_y)^T, P>,      u = f1(C_x) r,  v = f2(C_y) c

and its gradient is ``2 (u + v - h1(C_x) P h2(C_y)^T)`` for symmetric costs; for asymmetric ones the transposed
orientation is added instead of doubling (POT's averaging of the two gradients). As in POT, balanced problems use
``r = a`` and ``c = b`` (exact on the transport polytope); unbalanced ones use the plan's marginals.

For squared-Euclidean point clouds and the square loss every term comes from the factors ``C = A B^T``
(:func:`otalign.gromov.geometry.factors`): ``f1(C) r`` has entries ``A_i^T (B^T diag(r) B) A_i`` and
``C_x P C_y^T = A_x (B_x^T P B_y) A_y^T``, so one step costs ``O(n m d)`` time and ``O((n + m) d)`` memory.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from ..geometry import DenseCost, Geometry
from .geometry import LowRankCost, factors, squared_distance_scale
from .start import AnyPlan, ProductPlan
from .problem import GWProblem

#: Floor of ``C_y`` inside ``log`` for the kl loss (POT's).
KL_FLOOR = 1e-18


def _matvec(matrix: Tensor, vector: Tensor) -> Tensor:
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def _coupling(left: Tensor, plan: AnyPlan, right: Tensor) -> Tensor:
    """``left P right^T``, ``(..., n, m)``: two matrix products, or two matrix-vector products when ``P = a b^T`` (the
    outer loop's usual start: ``left a (right b)^T``)."""
    if isinstance(plan, ProductPlan):
        return _matvec(left, plan.a).unsqueeze(-1) * _matvec(right, plan.b).unsqueeze(-2)
    return left @ plan.matrix @ right.transpose(-1, -2)


def _quadratic_rows(left: Tensor, right: Tensor, weights: Tensor) -> Tensor:
    """``((A B^T) o (A B^T)) w`` from the factors: entries ``A_i^T (B^T diag(w) B) A_i``, ``(..., n)``."""
    gram = right.transpose(-1, -2) @ (weights.unsqueeze(-1) * right)
    return ((left @ gram) * left).sum(-1)


def _dot(x: Tensor, y: Tensor) -> Tensor:
    """``<x, y>`` over the last two axes, ``(...,)``."""
    return (x * y).sum((-1, -2))


class Linearization:
    """The objective ``F(P) = (1 - alpha) <M, P> + alpha E(P)`` of a :class:`GWProblem` and its gradient.

    Built once per solve from the problem's (possibly attached) tensors. ``low_rank`` says whether the factorised
    path is used (square loss, both intra costs squared-Euclidean point clouds); ``materialize`` makes its
    gradient a dense matrix instead of a :class:`LowRankCost`.
    """

    def __init__(self, problem: GWProblem, materialize: bool = False):
        self.problem = problem
        self.materialize = materialize
        self.alpha = problem.alpha
        self.symmetric = problem.symmetric
        gx, gy = problem.geom_x, problem.geom_y
        self.low_rank = (
            problem.loss == "square" and squared_distance_scale(gx) is not None and squared_distance_scale(gy) is not None
        )
        if self.low_rank:
            (self.ax, self.bx), (self.ay, self.by) = factors(gx), factors(gy)
        else:
            self._dense_terms(gx.matrix(), gy.matrix(), problem.loss)
        self.cross_factors: Optional[tuple[Tensor, Tensor]] = None
        self.cross: Optional[Tensor] = None
        if problem.is_fused:
            if squared_distance_scale(problem.cost_xy) is not None:
                self.cross_factors = factors(problem.cost_xy)
            else:
                self.cross = problem.cost_xy.matrix()
        self._fixed = self._constants(problem.a, problem.b) if problem.is_balanced else None

    def _dense_terms(self, cx: Tensor, cy: Tensor, loss: str) -> None:
        if loss == "square":
            self.fx, self.hx, self.fy, self.hy = cx * cx, cx, cy * cy, 2.0 * cy
        else:
            self.fx, self.hx = torch.xlogy(cx, cx) - cx, cx
            self.fy, self.hy = cy, cy.clamp_min(KL_FLOOR).log()

    # ------------------------------------------------------------------ constant (marginal) terms
    def _constants(self, r: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """``(u, v, u_t, v_t)``: ``u = f1(C_x) r``, ``v = f2(C_y) c`` and, for asymmetric costs, the transposed
        ``u_t = f1(C_x)^T r``, ``v_t = f2(C_y)^T c`` (``None`` when symmetric)."""
        if self.low_rank:
            u, v = _quadratic_rows(self.ax, self.bx, r), _quadratic_rows(self.ay, self.by, c)
            if self.symmetric:
                return u, v, None, None
            return u, v, _quadratic_rows(self.bx, self.ax, r), _quadratic_rows(self.by, self.ay, c)
        u, v = _matvec(self.fx, r), _matvec(self.fy, c)
        if self.symmetric:
            return u, v, None, None
        return u, v, _matvec(self.fx.transpose(-1, -2), r), _matvec(self.fy.transpose(-1, -2), c)

    def constants(self, plan: AnyPlan):
        return self._fixed if self._fixed is not None else self._constants(*plan.marginals)

    # ------------------------------------------------------------------ gradient
    def gradient(self, plan: AnyPlan) -> Union[Tensor, LowRankCost]:
        """``grad F(P) = (1 - alpha) M + alpha grad E(P)``: a dense ``(..., n, m)`` tensor, or a
        :class:`LowRankCost` on the factorised path (materialised when ``cost_xy`` is a dense matrix)."""
        u, v, ut, vt = self.constants(plan)
        alpha = self.alpha
        if self.low_rank:
            geometry = self._low_rank_gradient(plan, u, v, ut, vt)
            if self.cross is not None:
                return torch.add(geometry.matrix(), self.cross, alpha=1.0 - alpha)
            return geometry.matrix() if self.materialize else geometry
        coupling = _coupling(self.hx, plan, self.hy)
        if self.symmetric:
            grad = (u.unsqueeze(-1) + v.unsqueeze(-2)).sub_(coupling).mul_(2.0 * alpha)
        else:
            coupling_t = _coupling(self.hx.transpose(-1, -2), plan, self.hy.transpose(-1, -2))
            grad = ((u + ut).unsqueeze(-1) + (v + vt).unsqueeze(-2)).sub_(coupling).sub_(coupling_t).mul_(alpha)
        if self.cross is not None:
            grad = grad.add_(self.cross, alpha=1.0 - alpha)
        return grad

    def _applied(self, plan: AnyPlan, with_ay: bool) -> dict[str, Tensor]:
        """``P B_y``, ``P A_y`` and ``P B_cross`` from one pass over the plan."""
        parts = {"by": self.by}
        if with_ay:
            parts["ay"] = self.ay
        if self.cross_factors is not None:
            parts["bm"] = self.cross_factors[1]
        out = plan.apply(torch.cat(list(parts.values()), -1), axis=1)
        sizes = [t.shape[-1] for t in parts.values()]
        return dict(zip(parts, out.split(sizes, -1)))

    def _low_rank_gradient(self, plan, u, v, ut, vt) -> LowRankCost:
        alpha = self.alpha
        applied = self._applied(plan, with_ay=not self.symmetric)
        core = self.bx.transpose(-1, -2) @ applied["by"]  # B_x^T P B_y, (rx, ry)
        if self.symmetric:
            row, col = (2.0 * alpha) * u, (2.0 * alpha) * v
            lefts, rights = [(-4.0 * alpha) * (self.ax @ core)], [self.ay]
        else:
            core_t = self.ax.transpose(-1, -2) @ applied["ay"]  # A_x^T P A_y
            row, col = alpha * (u + ut), alpha * (v + vt)
            lefts = [(-2.0 * alpha) * (self.ax @ core), (-2.0 * alpha) * (self.bx @ core_t)]
            rights = [self.ay, self.by]
        if self.cross_factors is not None:
            lefts.append((1.0 - alpha) * self.cross_factors[0])
            rights.append(self.cross_factors[1])
        return LowRankCost(row, col, torch.cat(lefts, -1), torch.cat(rights, -1))

    # ------------------------------------------------------------------ objective
    def energy(self, plan: AnyPlan) -> Tensor:
        """The GW energy ``E(P)``, ``(...,)``."""
        u, v, _, _ = self.constants(plan)
        r, c = plan.marginals
        linear = (u * r).sum(-1) + (v * c).sum(-1)
        if self.low_rank:
            applied = self._applied(plan, with_ay=True)
            core = self.bx.transpose(-1, -2) @ applied["by"]
            return linear - 2.0 * _dot(core, self.ax.transpose(-1, -2) @ applied["ay"])
        return linear - _dot(_coupling(self.hx, plan, self.hy), plan.matrix)

    def linear_term(self, plan: AnyPlan) -> Optional[Tensor]:
        """``<M, P>``, ``(...,)``, or ``None`` without a cross cost."""
        if self.cross is not None:
            return _dot(self.cross, plan.matrix)
        if self.cross_factors is not None:
            left, right = self.cross_factors
            return _dot(left, plan.apply(right, axis=1))
        return None

    def value(self, plan: AnyPlan) -> Tensor:
        """``F(P) = (1 - alpha) <M, P> + alpha E(P)``, ``(...,)``."""
        energy = self.energy(plan)
        linear = self.linear_term(plan)
        return energy if linear is None else (1.0 - self.alpha) * linear + self.alpha * energy


def inner_geometry(cost: Union[Tensor, LowRankCost], shift: Optional[Tensor]) -> Union[Tensor, Geometry]:
    """The linearised cost with ``shift (..., m)`` (if any) subtracted from its columns (a warm start in disguise)."""
    if shift is None:
        return cost
    if isinstance(cost, LowRankCost):
        return cost.shift_columns(shift)
    return DenseCost(cost - shift.unsqueeze(-2))
