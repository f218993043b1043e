"""Proximal-point multistep OT (IPOT-style), in the log domain.

Outer step k solves ``P_k = argmin_{P in B} <C, P> + eps KL(P | P_{k-1})`` with ``P_0 = R``. Each ``P_k`` has the
form ``R exp((F + G - k C) / eps)``, i.e. it is the entropic plan of the same problem at strength ``eps / k``
(Xie et al. 2019, "A fast proximal point method for computing exact Wasserstein distance"). So outer step k runs
``inner_iter`` Sinkhorn sweeps at ``eps / k``, warm-started from step k-1 (``inner_iter=1`` is IPOT's inexact
scheme). As k grows the plan tends to the unregularised optimum (``ot.emd``) while every sweep stays in the log
domain, where a plain kernel ``exp(-C / (eps/k))`` would underflow.

``max_iter`` counts outer steps; :attr:`Plan.iterates` holds every outer step's potentials when
``keep_iterates=True``. The returned plan is the last outer step's, with ``Plan.problem.eps = eps / steps``.

For unbalanced problems the same eps / k sequence is run; it is then an annealing towards the unregularised
unbalanced problem rather than a literal proximal sequence (the marginal penalties do not scale with k).
"""

from __future__ import annotations

from typing import Optional

import torch

from otalign.plan import Plan
from otalign.problem import Problem
from otalign.solver import Init, Solver, initial_potentials
from otalign.validation import check_positive_int

from .registry import register
from .sinkhorn import Sinkhorn


@register("proximal")
class ProximalPoint(Solver):
    """Proximal-point outer loop around log-domain Sinkhorn sweeps (module docstring).

    Options:
        inner_iter: Sinkhorn sweeps per outer step (default 10).
        keep_iterates: keep each outer step's ``(f, g)``.
        block_rows: rows per block of the soft-min primitive.

    Stopping: ``tol`` bounds the L1 change of the plan between outer steps, ``|P_k - P_{k-1}|_1``.
    """

    sinkhorn_fixed_point = False

    def __init__(self, inner_iter: int = 10, keep_iterates: bool = False, block_rows: Optional[int] = None):
        super().__init__()
        self.inner = Sinkhorn(block_rows=block_rows)
        self.inner_iter = check_positive_int("inner_iter", inner_iter)
        self.keep_iterates = keep_iterates

    def run(self, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
        f, g = initial_potentials(problem, init)
        iterates = [] if self.keep_iterates else None
        previous = None
        error = None
        converged = False
        step = 0
        plan = None
        for step in range(1, max_iter + 1):
            staged = problem.with_eps(problem.eps / step)
            plan = self.inner.iterate(staged, f, g, self.inner_iter, tol=0.0)
            f, g = plan.f, plan.g
            if iterates is not None:
                iterates.append((f, g))
            if tol > 0:
                with torch.no_grad():
                    current = plan.matrix
                    if previous is not None:
                        error = problem.geometry.reduce_rows((current - previous).abs().sum((-1, -2)))
                        if bool((error <= tol).all()):
                            converged = True
                            break
                    previous = current
        assert plan is not None
        return Plan(plan.problem, f, g, step, converged, error, "unroll", iterates)
