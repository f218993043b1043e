"""Proximal-point multistep OT (IPOT-style), in the log domain.

Outer step k solves ``P_k = argmin_{P in B} <C, P> + eps KL(P | P_{k-1})`` with ``P_0 = R``. Each ``P_k`` has the
form ``R exp((F + G - k C) / eps)``, i.e. it is the entropic plan of the same problem at strength ``eps / k``
(Xie et al. 2019, "A fast proximal point method for computing exact Wasserstein distance"). So outer step k runs
``inner_iter`` Sinkhorn sweeps at ``eps / k``, warm-started from step k-1 (``inner_iter=1`` is IPOT's inexact
scheme). As k grows the plan tends to the unregularised optimum (``ot.emd``) while every sweep stays in the log
domain, where a plain kernel ``exp(-C / (eps/k))`` would underflow.

``max_iter`` counts outer steps; :attr:`Plan.iterates` holds every outer step's potentials when
``keep_iterates=True``. The returned plan is the last outer step's, with ``Plan.problem.eps = eps / k``.

With ``tol > 0`` the marginals are watched (:attr:`Plan.marginal_residual`, L1 in mass units, measured after
every outer step): an outer step moves on to ``eps / (k + 1)`` only once the sweeps at ``eps / k`` have brought
both residuals below ``max(tol, 1e-3 * mass)`` (intermediate stages need not be exact, but no row or column may
be starved of mass, which small ``eps / k`` cannot repair), and once the plan has stopped moving
(``|P_k - P_{k-1}|_1 <= tol``) further outer steps stay at the same ``eps / k`` as balancing sweeps until both
residuals are at most ``tol``. ``converged`` requires both. So a converged plan meets its marginals, and
``<C, P>`` is then never below the exact optimum. With ``tol = 0`` every outer step advances k, as in IPOT's
inexact scheme, and nothing is measured.
"""

from __future__ import annotations

from typing import Optional

import torch

from otalign.capabilities import ALL
from otalign.plan import Plan
from otalign.problem import Problem
from otalign.solver import Init, Solver, initial_potentials
from otalign.checks import check_positive_int

from .registry import register
from .sinkhorn import Sinkhorn


@register("proximal")
class ProximalPoint(Solver):
    """Proximal-point outer loop around log-domain Sinkhorn sweeps (module docstring).

    Options:
        inner_iter: Sinkhorn sweeps per outer step (default 10).
        keep_iterates: keep each outer step's ``(f, g)``.
        block_rows: rows per block of the soft-min primitive.

    Stopping: ``tol`` bounds both marginal residuals at the current ``eps / k`` (L1, mass units) and the L1 change
    of the plan between outer steps, ``|P_k - P_{k-1}|_1`` (module docstring).
    """

    supports = ALL - {"implicit"}
    limitations = {"implicit": "its plan is not the Sinkhorn fixed point of the problem"}
    remedies = (
        ("max_iter", "raise max_iter (outer steps)"),
        ("inner_iter", "raise the solver option inner_iter"),
        ("eps", "use a larger eps"),
    )

    def __init__(self, inner_iter: int = 10, keep_iterates: bool = False, block_rows: Optional[int] = None):
        super().__init__()
        self.inner = Sinkhorn(block_rows=block_rows)
        self.inner_iter = check_positive_int("inner_iter", inner_iter)
        self.keep_iterates = keep_iterates

    def run(self, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
        f, g = initial_potentials(problem, init)
        iterates = [] if self.keep_iterates else None
        rough = 0.0 if tol == 0 else max(tol, 1e-3 * float(torch.maximum(problem.a.sum(-1), problem.b.sum(-1)).max()))
        previous = None
        error = None
        converged = False
        step = 0
        k = 1
        plan = None
        for step in range(1, max_iter + 1):
            staged = problem.with_eps(problem.eps / k)
            plan = self.inner.iterate(staged, f, g, self.inner_iter, tol=tol)
            f, g = plan.f, plan.g
            if iterates is not None:
                iterates.append((f, g))
            if tol == 0:
                k += 1
                continue
            with torch.no_grad():
                measured = Plan(staged.detach(), f.detach(), g.detach(), 0, False)
                residual = torch.maximum(*measured.marginal_residual)
                error = residual
                if bool((residual > rough).any()):  # rows or columns still starved: stay at this eps
                    continue
                current = measured.matrix
                moving = previous is None
                if previous is not None:
                    change = problem.geometry.reduce_rows((current - previous).abs().sum((-1, -2)))
                    error = torch.maximum(change, residual)
                    moving = bool((change > tol).any())
                    if not moving and bool((residual <= tol).all()):
                        converged = True
                        break
                previous = current
            if moving:  # once the plan has stopped moving, the next steps balance at this eps
                k += 1
        assert plan is not None
        return Plan(plan.problem, f, g, step, converged, error, "unroll", iterates)
