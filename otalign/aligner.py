"""The abstract alignment step: cost -> plan (any solver) -> divergence to a target plan."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

from torch import Tensor

from .divergences import Divergence, anchor_weights, get_divergence
from .geometry import Geometry
from .plan import Plan
from .registry import resolve_solver
from .problem import REFERENCES, Problem
from .solving import solve
from .solver import GRAD_MODES, Init, Solver
from .targets import check_target
from .checks import check_eps, check_number, check_positive_int, check_rho, trusted


@dataclass
class Alignment:
    """What an :class:`Aligner` returns: the solved plan, the per-anchor divergence ``(..., n)`` and the anchors
    that count (rows of the target with mass)."""

    plan: Plan
    per_anchor: Tensor
    weights: Tensor

    @property
    def loss(self) -> Tensor:
        """Mean divergence over the anchors that have a target, ``(...,)``."""
        return (self.per_anchor * self.weights).sum(-1) / self.weights.sum(-1).clamp_min(1)


class Aligner:
    """Align a cost's plan with a target plan: ``loss = d(P_tgt | Plan(cost))``.

    Args:
        solver: solver name or instance (see :func:`otalign.solve`).
        divergence: ``"kl"``, ``"robust"``, or any callable ``(plan, target) -> (..., n)``.
        eps, rho_a, rho_b, reference: the :class:`Problem`'s parameters.
        max_iter, tol, grad: passed to :func:`otalign.solve` (GCA uses ``tol=0``: a fixed number of iterations).
        **options: the solver's options.

    Example::

        >>> aligner = Aligner("sinkhorn", "kl", eps=0.5, max_iter=10, tol=0)
        >>> out = aligner(cost, target)        # cost (n, m), target (n, m)
        >>> out.loss.backward()
    """

    def __init__(
        self,
        solver: Union[str, Solver] = "sinkhorn",
        divergence: Union[str, Divergence] = "kl",
        *,
        eps: float = 0.1,
        rho_a: float = math.inf,
        rho_b: float = math.inf,
        reference: str = "product",
        max_iter: int = 100,
        tol: float = 1e-6,
        grad: str = "unroll",
        **options,
    ):
        solver = resolve_solver(solver, options)
        check_eps(eps)
        check_rho("rho_a", rho_a)
        check_rho("rho_b", rho_b)
        if reference not in REFERENCES:
            raise ValueError(f"reference: expected one of {REFERENCES}, got {reference!r}")
        check_positive_int("max_iter", max_iter)
        check_number("tol", tol)
        if not isinstance(grad, str) or grad not in GRAD_MODES:
            raise ValueError(f"grad: expected one of {GRAD_MODES}, got {grad!r}")
        self.solver = solver
        self.divergence = get_divergence(divergence)
        self.eps, self.rho_a, self.rho_b, self.reference = eps, rho_a, rho_b, reference
        self.max_iter, self.tol, self.grad = max_iter, tol, grad

    def problem(
        self,
        cost: Union[Tensor, Geometry],
        a: Optional[Tensor] = None,
        b: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Problem:
        return Problem(cost, a, b, self.eps, self.rho_a, self.rho_b, self.reference, mask)

    def __call__(
        self,
        cost: Union[Tensor, Geometry],
        target: Tensor,
        a: Optional[Tensor] = None,
        b: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
        init: Init = None,
    ) -> Alignment:
        problem = self.problem(cost, a, b, mask)
        target = check_target(target, (problem.n, problem.m), problem.batch_shape, like=problem.a)
        with trusted():
            return self.align(problem, target, init)

    def align(self, problem: Problem, target: Tensor, init: Init = None) -> Alignment:
        """Solve ``problem`` and score its plan against ``target`` ``(..., n, m)``, both already validated by the
        caller (what the losses use: inputs are checked once, at their own boundary). The plan's log-matrix is
        computed once and shared by every term of the divergence."""
        plan = solve(problem, self.solver, max_iter=self.max_iter, tol=self.tol, grad=self.grad, init=init)
        return Alignment(plan, self.divergence(plan, target), anchor_weights(target))
