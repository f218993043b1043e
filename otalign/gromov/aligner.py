"""GW as an alignment step: two intra-domain geometries -> GW plan -> divergence to a target plan."""

from __future__ import annotations

import math
from typing import Optional, Union

from torch import Tensor

from ..aligner import Alignment
from ..divergences import Divergence, anchor_weights, get_divergence
from ..solver import Solver
from ..targets import check_target
from ..checks import check_eps, check_number, check_positive_int, check_rho
from .problem import LOSSES, Cost, GWProblem
from .solve import GW_GRAD_MODES, SCHEDULES, GWInit, _solver, solve_gw


class GWAligner:
    """Align a GW plan with a target plan: ``loss = d(P_tgt | GWPlan(C_x, C_y))``.

    The same call convention as :class:`otalign.Aligner`, with the two intra-domain geometries in place of the
    cost: rows of the plan (and of the target) are the ``x`` side, columns the ``y`` side. The divergence is
    evaluated on the last linear plan (:attr:`GWPlan.inner`), whose matrix is the GW plan.

    Args:
        solver: linear solver of each outer step (name or instance); ``**options`` go to its constructor.
        divergence: ``"kl"``, ``"robust"`` or a callable ``(plan, target) -> (..., n)``.
        eps, alpha, loss, rho_a, rho_b: the :class:`GWProblem`'s parameters.
        max_iter, tol, grad, inner_max_iter, inner_tol, step, schedule: passed to :func:`solve_gw` (its adaptive
            schedule and its ``converged`` rule apply).

    Example::

        >>> aligner = GWAligner(eps=0.01, max_iter=20, tol=0, inner_max_iter=50, inner_tol=0)
        >>> out = aligner(PointCloud(zx, zx), PointCloud(zy, zy), torch.eye(len(zx)))
        >>> out.loss.backward()
    """

    def __init__(
        self,
        solver: Union[str, Solver] = "sinkhorn",
        divergence: Union[str, Divergence] = "kl",
        *,
        eps: float = 0.1,
        alpha: Optional[float] = None,
        loss: str = "square",
        rho_a: float = math.inf,
        rho_b: float = math.inf,
        max_iter: int = 100,
        tol: float = 1e-6,
        grad: str = "unroll",
        inner_max_iter: int = 1000,
        inner_tol: Optional[float] = None,
        step: Optional[float] = None,
        schedule: str = "adaptive",
        **options,
    ):
        self.solver = _solver(solver, options)
        self.divergence = get_divergence(divergence)
        self.eps = check_eps(eps)
        if alpha is not None:
            check_number("alpha", alpha)
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
        self.alpha, self.loss = alpha, loss
        self.rho_a, self.rho_b = check_rho("rho_a", rho_a), check_rho("rho_b", rho_b)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = check_number("tol", tol)
        if not isinstance(grad, str) or grad not in GW_GRAD_MODES:
            raise ValueError(f"grad: expected one of {GW_GRAD_MODES}, got {grad!r}")
        self.grad = grad
        self.inner_max_iter = check_positive_int("inner_max_iter", inner_max_iter)
        self.inner_tol = None if inner_tol is None else check_number("inner_tol", inner_tol)
        if step is not None:
            check_number("step", step, strict=True)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
        self.step, self.schedule = step, schedule

    def problem(
        self, geom_x: Cost, geom_y: Cost, a: Optional[Tensor] = None, b: Optional[Tensor] = None,
        cost_xy: Optional[Cost] = None,
    ) -> GWProblem:
        return GWProblem(geom_x, geom_y, a, b, self.eps, self.alpha, cost_xy, self.loss, self.rho_a, self.rho_b)

    def __call__(
        self,
        geom_x: Cost,
        geom_y: Cost,
        target: Tensor,
        a: Optional[Tensor] = None,
        b: Optional[Tensor] = None,
        cost_xy: Optional[Cost] = None,
        init: GWInit = None,
    ) -> Alignment:
        """Solve the GW problem and score it: an :class:`otalign.Alignment` whose ``plan`` is the :class:`GWPlan`,
        ``per_anchor`` the divergence per row ``(..., n)`` and ``weights`` the rows with target mass."""
        problem = self.problem(geom_x, geom_y, a, b, cost_xy)
        target = check_target(target, (problem.n, problem.m), problem.batch_shape)
        plan = solve_gw(
            problem, self.solver, max_iter=self.max_iter, tol=self.tol, grad=self.grad, init=init,
            inner_max_iter=self.inner_max_iter, inner_tol=self.inner_tol, step=self.step, schedule=self.schedule,
        )
        return Alignment(plan, self.divergence(plan.inner, target), anchor_weights(target))
