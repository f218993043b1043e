"""What the low-rank solver returns: a plan held as factors ``P = Q diag(1/g) R^T``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from .cost_operator import CostOperator, cost_operator
from .plan import MarginalQuantities
from .problem import Problem


@dataclass(frozen=True)
class LowRankPlan(MarginalQuantities):
    """A transport plan of non-negative rank at most ``r``, ``P = Q diag(1/g) R^T`` (Scetbon, Cuturi & Peyre 2021).

    Nothing here is n x m unless :attr:`matrix` or :attr:`log_matrix` is asked for: marginals, :meth:`apply` and
    :attr:`value_linear` use the factors (and, for point clouds with an inner-product cost, the factored cost), in
    O((n + m) r) memory.

    Attributes:
        problem: the (balanced) problem solved.
        Q: ``(..., n, r)``, non-negative, rows sum to ``a`` (source side).
        R: ``(..., m, r)``, non-negative, rows sum to ``b`` (target side).
        inner_marginal: ``(..., r)``, the common column sums of ``Q`` and ``R`` (the ``g`` of the papers and of
            POT). Not a dual potential: a low-rank plan has no ``f``, ``g`` potentials (``plan.g`` is a deprecated
            alias of this field).
        epsilon: the weight of the entropic term in :attr:`value`.
        iterations: mirror-descent steps run.
        converged: the stopping criterion was met and the last projection reached its tolerance.
        error: the last relative change of the objective ``(...,)`` (``None`` if never measured).
        grad: the differentiation mode the plan was made with.
        history: the objective before each mirror-descent step, ``(iterations, ...)`` (detached).
        projection_error: the last projection's marginal error, ``(...,)``: ``|Q 1 - a|_1 + |R 1 - b|_1`` after
            Dykstra's, ``|Q^T 1 - g|_1 + |R^T 1 - g|_1`` after Newton's (the other constraints hold exactly).
        projection_iterations: projection iterations (Dykstra's or Newton's) run, summed over all steps.
        scalings: the last projection's column scalings ``(v_Q, v_R)``, logs, ``(..., r)`` each (``None`` before
            the first step): a solve started from this plan (``init=plan``) starts its first projection from them,
            as the next step of this run would.
        projection_tolerance: the tolerance the last projection was run to, ``(...,)``: ``inner_tol``, or larger
            for the inexact projections of a solve far from its ``tol``.

    Example::

        >>> x, y = torch.randn(10**5, 3), torch.randn(10**5, 3)
        >>> plan = otalign.solve(otalign.Problem(otalign.PointCloud(x, y), eps=0.01), "lowrank", rank=10)
        >>> plan.value_linear, plan.marginal_error, plan.apply(y)   # all without a 10^5 x 10^5 matrix
    """

    problem: Problem
    Q: Tensor
    R: Tensor
    inner_marginal: Tensor
    epsilon: float
    iterations: int
    converged: bool
    error: Optional[Tensor] = None
    grad: str = "unroll"
    history: Optional[Tensor] = None
    projection_error: Optional[Tensor] = None
    projection_iterations: int = 0
    scalings: Optional[tuple[Tensor, Tensor]] = None
    projection_tolerance: Optional[Tensor] = None
    _operator: Optional[CostOperator] = field(default=None, repr=False)

    @property
    def g(self) -> Tensor:
        """Deprecated alias of :attr:`inner_marginal` (``Plan.g`` is a potential; this is a marginal)."""
        warnings.warn("LowRankPlan.g is deprecated: use LowRankPlan.inner_marginal (Plan.g is a dual potential, this "
                      "is the factors' inner marginal)", DeprecationWarning, stacklevel=2)
        return self.inner_marginal

    @property
    def rank(self) -> int:
        return self.inner_marginal.shape[-1]

    @property
    def matrix(self) -> Tensor:
        """The plan ``P = Q diag(1/g) R^T``, ``(..., n, m)`` (materialised: n x m memory)."""
        return (self.Q / self.inner_marginal.unsqueeze(-2)) @ self.R.transpose(-1, -2)

    @property
    def log_matrix(self) -> Tensor:
        """``log P``, ``(..., n, m)``, as a log-sum-exp over the rank (exact where ``P`` underflows)."""
        log_q = self.Q.log() - self.inner_marginal.log().unsqueeze(-2)
        return torch.logsumexp(log_q.unsqueeze(-2) + self.R.log().unsqueeze(-3), dim=-1)

    def apply(self, x: Tensor, axis: int = 1) -> Tensor:
        """``P @ x`` (axis=1, ``x (..., m, k)`` -> ``(..., n, k)``) or ``P^T @ x`` (axis=0, ``x (..., n, k)`` ->
        ``(..., m, k)``), in O((n + m) r k)."""
        if axis not in (0, 1):
            raise ValueError(f"axis: expected 0 or 1, got {axis!r}")
        near, far = (self.Q, self.R) if axis == 1 else (self.R, self.Q)
        return near @ ((far.transpose(-1, -2) @ x) / self.inner_marginal.unsqueeze(-1))

    @property
    def marginals(self) -> tuple[Tensor, Tensor]:
        """Row sums ``P 1`` ``(..., n)`` and column sums ``P^T 1`` ``(..., m)``, from the factors."""
        rows = self.Q @ (self.R.sum(-2) / self.inner_marginal).unsqueeze(-1)
        cols = self.R @ (self.Q.sum(-2) / self.inner_marginal).unsqueeze(-1)
        return rows.squeeze(-1), cols.squeeze(-1)

    def measured_residual(self) -> Tensor:
        """The larger of ``|P 1 - a|_1`` and ``|P^T 1 - b|_1`` from the factors in float64, ``(...,)`` (balanced
        problems only: every low-rank side is hard)."""
        with torch.no_grad():
            Q, R, g = (x.detach().double() for x in (self.Q, self.R, self.inner_marginal))
            rows = Q @ (R.sum(-2) / g).unsqueeze(-1)
            cols = R @ (Q.sum(-2) / g).unsqueeze(-1)
            a, b = self.problem.a.detach().double(), self.problem.b.detach().double()
            return torch.maximum((rows.squeeze(-1) - a).abs().sum(-1), (cols.squeeze(-1) - b).abs().sum(-1))

    @property
    def operator(self) -> CostOperator:
        """The cost products of the problem (:func:`otalign.cost_operator.cost_operator`)."""
        if self._operator is None:
            object.__setattr__(self, "_operator", cost_operator(self.problem.geometry))
        return self._operator

    @property
    def value_linear(self) -> Tensor:
        """``<C, P> = sum_k (Q^T C R)_kk / g_k``, ``(...,)``; O((n + m) r d) for a factored cost."""
        return linear_value(self.operator, self.Q, self.R, self.inner_marginal)

    @property
    def value(self) -> Tensor:
        """The low-rank objective, ``(...,)``:

            <C, P> + epsilon (sum Q log Q + sum R log R + sum g log g)

        (POT's ``lowrank_sinkhorn`` convention, ``0 log 0 = 0``). This is not the full problem's
        ``<C, P> + eps KL(P | a b^T)``: the entropy is that of the factors. With ``grad="envelope"`` the factors
        are detached, so the gradient of this value is ``P``'s (Danskin), through the cost only.
        """
        return self.value_linear + self.epsilon * factor_entropy(self.Q, self.R, self.inner_marginal)

    def __repr__(self) -> str:
        err = None if self.error is None else float(self.error.max())
        return (
            f"LowRankPlan({self.problem!r}, rank={self.rank}, iterations={self.iterations}, "
            f"converged={self.converged}, error={err}, grad={self.grad!r})"
        )


def linear_value(operator: CostOperator, Q: Tensor, R: Tensor, g: Tensor, CR: Optional[Tensor] = None) -> Tensor:
    """``<C, Q diag(1/g) R^T>``, ``(...,)``; pass ``CR = C @ R`` when it is at hand."""
    CR = operator.matmul(R) if CR is None else CR
    return ((Q * CR).sum(-2) / g).sum(-1)


def factor_entropy(Q: Tensor, R: Tensor, g: Tensor) -> Tensor:
    """``sum Q log Q + sum R log R + sum g log g`` (``0 log 0 = 0``), ``(...,)``."""
    return torch.xlogy(Q, Q).sum((-1, -2)) + torch.xlogy(R, R).sum((-1, -2)) + torch.xlogy(g, g).sum(-1)


__all__ = ["LowRankPlan", "linear_value", "factor_entropy"]
