"""Class-regularised entropic OT (Courty et al., 2017): the non-convex group-lasso ``lp-l1`` penalty with
``p = 1/2``, minimised by majorisation-minimisation; the estimator :class:`SinkhornLpl1Transport`.

The problem (rows: source samples with labels ``y``; columns: target samples)

    min_P  <C, P> + eps KL(P | a b^T) + eta sum_{j, c} (sum_{i: y_i = c} P_ij + delta)^{1/2},   P 1 = a, P^T 1 = b

groups, for each target sample ``j``, the mass it receives from each source class ``c``; the square root favours
few classes per target sample. The penalty is concave, so its tangent at the current plan majorises it: each MM
step solves an entropic OT problem with cost ``C + eta W``, ``W_ij = 1/2 (sum_{k: y_k = y_i} P_kj + delta)^{-1/2}``,
``delta = 1e-3`` (POT's ``sinkhorn_lpl1_mm`` makes the same choices).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import Tensor

from ..plan import Plan
from ..problem import Problem
from ..solving import solve
from ..solver import ConvergenceWarning
from ..checks import check_number, check_positive_int
from .arrays import one_hot
from .base import BaseTransport
from .ground import Metric

#: Exponent of the group penalty and the smoothing ``delta`` of its tangent.
P_EXPONENT, DELTA = 0.5, 1e-3


def sinkhorn_lpl1(cost: Tensor, a: Tensor, b: Tensor, labels: Tensor, eps: float, eta: float, max_iter: int = 10,
                  max_inner_iter: int = 200, tol: float = 1e-8, mask: Optional[Tensor] = None,
                  solver: str = "sinkhorn") -> Plan:
    """``max_iter`` MM steps of the module's problem; each an :func:`otalign.solve` of cost ``C + eta W``
    (``max_inner_iter`` iterations, ``tol`` on the row-marginal L1 error), warm-started from the previous step.

    Args:
        cost: ``(n, m)``; a, b: masses ``(n,)``, ``(m,)``; labels: source labels ``(n,)`` (int64; every distinct
            value is a group, ``-1`` included); eps > 0, eta >= 0; mask: forbidden pairs, as :class:`Problem`.

    Returns the :class:`Plan` of the last MM step (its ``problem.cost`` is ``C + eta W``). Warns once
    (:class:`otalign.ConvergenceWarning`) if some inner solves hit ``max_inner_iter``.

    Example::

        >>> plan = sinkhorn_lpl1(C, a, b, ys, eps=0.1, eta=1.0)
        >>> plan.matrix                              # (n, m), rows sum to a, columns to b
    """
    eps = check_number("eps", eps, strict=True)
    eta = check_number("eta", eta)
    max_iter = check_positive_int("max_iter", max_iter)
    _, masks = one_hot(labels, cost.dtype)
    weights = torch.zeros_like(cost)
    plan: Optional[Plan] = None
    missed = 0
    for _ in range(max_iter):
        problem = Problem(cost + eta * weights, a, b, eps=eps, mask=mask)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            plan = solve(problem, solver, max_iter=max_inner_iter, tol=tol, grad="detach", init=plan)
        missed += tol > 0 and not plan.converged
        class_mass = masks @ (plan.matrix.T @ masks).T  # (n, m): mass that j receives from i's class
        weights = P_EXPONENT * (class_mass + DELTA) ** (P_EXPONENT - 1)
    if missed:
        warnings.warn(f"sinkhorn_lpl1: {missed} of {max_iter} inner solves stopped at max_inner_iter="
                      f"{max_inner_iter} above tol={tol:g}; raise max_inner_iter or eps", ConvergenceWarning,
                      stacklevel=2)
    return plan


class SinkhornLpl1Transport(BaseTransport):
    """Class-regularised OT domain adaptation (the module's problem) with POT's ``ot.da.SinkhornLpl1Transport``
    defaults; ``fit`` needs the source labels ``ys``.

    Args:
        eps: entropic strength (> 0), POT's ``reg_e``.
        reg_cl: weight ``eta`` (>= 0) of the class penalty.
        max_iter: MM steps (all run; POT's default 10).
        max_inner_iter: iteration cap of each inner Sinkhorn solve (POT's 200).
        tol: inner stopping tolerance, the row-marginal L1 error (POT: column-marginal L2 error).
        metric, norm, limit_max: as :class:`~otalign.adapt.SinkhornTransport`.
        solver: the inner :func:`otalign.solve` solver (default ``"sinkhorn"``).

    The out-of-sample map is ``"ferradans"`` (the plan is a Gibbs kernel of ``C + eta W``, which has no value at a
    new point).

    Example::

        >>> ot = SinkhornLpl1Transport(eps=0.1, reg_cl=1.0, norm="max").fit(Xs, ys, Xt)
        >>> ot.transform(Xs_new)                     # nearest fitted source point's displacement
    """

    def __init__(self, eps: float = 1.0, reg_cl: float = 0.1, max_iter: int = 10, max_inner_iter: int = 200,
                 tol: float = 1e-8, metric: Metric = "sqeuclidean", norm: Optional[str] = None,
                 limit_max: float = math.inf, solver: str = "sinkhorn"):
        self.eps, self.reg_cl, self.max_iter, self.max_inner_iter, self.tol = eps, reg_cl, max_iter, max_inner_iter, tol
        self.metric, self.norm, self.limit_max, self.solver = metric, norm, limit_max, solver
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        check_number("eps", self.eps, strict=True)
        check_number("reg_cl", self.reg_cl)
        check_positive_int("max_inner_iter", self.max_inner_iter)

    def _solve(self, cost: Tensor, a: Tensor, b: Tensor, mask: Optional[Tensor], ys: Optional[Tensor]) -> Plan:
        if ys is None:
            raise ValueError(f"ys: {type(self).__name__} needs the source labels (n_source,) in fit")
        return sinkhorn_lpl1(cost, a, b, ys, self.eps, self.reg_cl, self.max_iter, self.max_inner_iter, self.tol,
                             mask, self.solver)


__all__ = ["DELTA", "P_EXPONENT", "SinkhornLpl1Transport", "sinkhorn_lpl1"]
