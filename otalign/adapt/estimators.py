"""Entropic OT transports for domain adaptation: balanced (:class:`SinkhornTransport`) and unbalanced
(:class:`UnbalancedSinkhornTransport`).

Both solve, with :func:`otalign.solve`,

    min_P  <C, P> + eps KL(P | mu_s mu_t^T)  [+ rho KL(P 1 | mu_s) + rho KL(P^T 1 | mu_t)]

over source samples (rows, uniform masses ``mu_s``) and target samples (columns, ``mu_t``); ``eps`` is POT's
``reg_e`` and ``rho`` its ``reg_m``, both in cost units (after ``norm``).
"""

from __future__ import annotations

import math
from typing import Optional

from torch import Tensor

from ..plan import Plan
from ..problem import Problem
from ..solving import solve
from ..checks import check_number
from .base import BaseTransport
from .ground import Metric


class SinkhornTransport(BaseTransport):
    """Entropic OT domain adaptation (Courty et al., 2017) with POT's ``ot.da.SinkhornTransport`` defaults.

    Args:
        eps: entropic strength (> 0), in units of the (normalised) cost; POT's ``reg_e``.
        max_iter: Sinkhorn iteration cap.
        tol: stopping tolerance: the L1 error of the plan's row marginal (otalign's Sinkhorn criterion; POT
            stops on the L2 error of the column marginal, checked every 10 iterations). ``0`` runs ``max_iter``.
        metric: ground cost: ``"sqeuclidean"`` (default), ``"euclidean"``, a name of :data:`otalign.costs.COSTS`
            or a callable ``(x (n, d), y (m, d)) -> (n, m)``.
        norm: ``None``, ``"median"``, ``"max"`` (divide the fitted cost by its median / max, reused for new
            points), ``"log"`` or ``"loglog"``.
        limit_max: semi-supervised label cost (used when ``fit`` gets both ``ys`` and ``yt``): labelled pairs with
            different labels cost ``limit_max * max(C)``; ``inf`` (default) forbids them.
        out_of_sample_map: ``"continuous"`` (default, POT's): every point goes through the entropic map of the
            fitted potentials; ``"ferradans"``: barycentric map on the fitted points, nearest fitted point's
            displacement elsewhere (see :meth:`transform`).
        solver: an :func:`otalign.solve` solver name (default ``"sinkhorn"``, log domain).

    Example::

        >>> ot = SinkhornTransport(eps=0.1, norm="max").fit(Xs, Xt=Xt)
        >>> Xs_on_target = ot.transform(Xs)          # (n_s, d), NumPy in, NumPy out
        >>> scores = ot.transform_labels(ys)         # (n_t, n_classes) label mass per target sample
    """

    def __init__(self, eps: float = 1.0, max_iter: int = 1000, tol: float = 1e-8, metric: Metric = "sqeuclidean",
                 norm: Optional[str] = None, limit_max: float = math.inf, out_of_sample_map: str = "continuous",
                 solver: str = "sinkhorn"):
        self.eps, self.max_iter, self.tol, self.metric, self.norm = eps, max_iter, tol, metric, norm
        self.limit_max, self.out_of_sample_map, self.solver = limit_max, out_of_sample_map, solver
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        check_number("eps", self.eps, strict=True)

    def _solve(self, cost: Tensor, a: Tensor, b: Tensor, mask: Optional[Tensor], ys: Optional[Tensor]) -> Plan:
        problem = Problem(cost, a, b, eps=self.eps, mask=mask)
        return solve(problem, self.solver, max_iter=self.max_iter, tol=self.tol, grad="detach")


class UnbalancedSinkhornTransport(BaseTransport):
    """Unbalanced entropic OT domain adaptation (Chizat et al., 2018): both marginals relaxed by
    ``rho KL``; the analogue of POT's ``ot.da.UnbalancedSinkhornTransport`` (``reg_type="kl"``).

    Args:
        eps: entropic strength (> 0), POT's ``reg_e``.
        rho: marginal relaxation (> 0, ``inf`` = balanced), POT's ``reg_m``.
        max_iter: iteration cap. Default 1000, not POT's 10: POT's default stops after 10 scaling iterations,
            far from the solution; pass ``max_iter=10, tol=0, solver="sinkhorn"`` for POT's exact iterates.
        tol: stopping tolerance on the sup-norm change of ``(f, g) / eps`` in one iteration (otalign's criterion
            for relaxed marginals; POT uses the relative change of the scalings).
        metric, norm: as :class:`SinkhornTransport`.
        out_of_sample_map: ``"ferradans"`` (default; POT's only choice for this estimator) or ``"continuous"``
            (the entropic map of the fitted potentials, as :class:`SinkhornTransport`).
        limit_max: label cost, as :class:`SinkhornTransport`; default 10 (POT's for this estimator).
        solver: default ``"unbalanced"`` (translation-invariant Sinkhorn: same fixed point, fewer iterations).

    Example::

        >>> ot = UnbalancedSinkhornTransport(eps=0.1, rho=1.0, norm="max").fit(Xs, Xt=Xt)
        >>> ot.coupling_.sum()                       # total mass, <= 1 when the domains disagree
    """

    def __init__(self, eps: float = 1.0, rho: float = 0.1, max_iter: int = 1000, tol: float = 1e-9,
                 metric: Metric = "sqeuclidean", norm: Optional[str] = None, limit_max: float = 10.0,
                 out_of_sample_map: str = "ferradans", solver: str = "unbalanced"):
        self.eps, self.rho, self.max_iter, self.tol, self.metric = eps, rho, max_iter, tol, metric
        self.norm, self.limit_max, self.out_of_sample_map, self.solver = norm, limit_max, out_of_sample_map, solver
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        check_number("eps", self.eps, strict=True)
        check_number("rho", self.rho, strict=True, finite=False)

    def _solve(self, cost: Tensor, a: Tensor, b: Tensor, mask: Optional[Tensor], ys: Optional[Tensor]) -> Plan:
        problem = Problem(cost, a, b, eps=self.eps, rho_a=self.rho, rho_b=self.rho, mask=mask)
        return solve(problem, self.solver, max_iter=self.max_iter, tol=self.tol, grad="detach")


__all__ = ["SinkhornTransport", "UnbalancedSinkhornTransport"]
