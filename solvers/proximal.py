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

Batches: the schedule (k, the residuals, the plan's change, stopping) is kept per batch element, so each element's
plan is the one a solve of that element alone returns. Elements at the same k are swept together; an element that
has converged is left as it is. When the elements end at different ``eps / k`` the result is a
:class:`~otalign.stacked_plan.StackedPlan` (``parts[i]`` is element i's plan at its own ``eps / k_i``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from otalign.batch_select import select
from otalign.capabilities import ALL
from otalign.plan import Plan
from otalign.problem import Problem
from otalign.stacked_plan import StackedPlan
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
        size = problem.batch_shape[0] if problem.batch_shape else 1
        iterates = [] if self.keep_iterates else None
        state = [_Element(k=1, rough=rough) for rough in _rough_tolerances(problem, tol)]
        for _ in range(max_iter):
            active = [i for i, e in enumerate(state) if not e.converged]
            if not active:
                break
            stages: dict[int, list[int]] = {}
            for i in active:
                stages.setdefault(state[i].k, []).append(i)
            for k, index in stages.items():
                whole = len(index) == size
                part = problem if whole else select(problem, index)
                rows = None if whole else torch.as_tensor(index, device=problem.device)
                staged = part.with_eps(problem.eps / k)
                plan = self.inner.iterate(staged, f if whole else f[rows], g if whole else g[rows],
                                          self.inner_iter, tol=tol)
                f = plan.f if whole else f.index_copy(0, rows, plan.f)
                g = plan.g if whole else g.index_copy(0, rows, plan.g)
                self._advance(staged, plan, [state[i] for i in index], tol)
            if iterates is not None:
                iterates.append((f, g))
        return self._result(problem, state, f, g, iterates)

    def _advance(self, staged: Problem, plan: Plan, elements: list["_Element"], tol: float) -> None:
        """Book one outer step of ``elements`` (the batch elements of ``staged``, all at ``eps / k``)."""
        for e in elements:
            e.steps += 1
            e.eps = staged.eps
        if tol == 0:
            for e in elements:
                e.k += 1
            return
        with torch.no_grad():
            measured = Plan(staged.detach(), plan.f.detach(), plan.g.detach(), 0, False)
            residual = torch.maximum(*measured.marginal_residual).reshape(-1)
            current = measured.matrix.reshape((len(elements),) + measured.matrix.shape[-2:])
            previous = torch.stack([c if e.previous is None else e.previous for e, c in zip(elements, current)])
            change = staged.geometry.reduce_rows((current - previous).abs().sum((-1, -2)).reshape(-1))
        for i, e in enumerate(elements):
            e.error = residual[i]
            if float(residual[i]) > e.rough:  # rows or columns still starved: stay at this eps
                continue
            moving = e.previous is None
            if not moving:
                e.error = torch.maximum(change[i], residual[i])
                moving = float(change[i]) > tol
                if not moving and float(residual[i]) <= tol:
                    e.converged = True
            e.previous = current[i]
            if moving:  # once the plan has stopped moving, the next steps balance at this eps
                e.k += 1

    @staticmethod
    def _result(problem: Problem, state: list["_Element"], f: Tensor, g: Tensor, iterates) -> Plan:
        """One plan at the common last ``eps / k``; a :class:`StackedPlan` when the elements ended apart."""
        converged = all(e.converged for e in state)
        steps = max(e.steps for e in state)
        errors = [e.error for e in state]
        error = None if any(x is None for x in errors) else torch.stack(errors).reshape(problem.batch_shape)
        if len({e.eps for e in state}) == 1:
            return Plan(problem.with_eps(state[0].eps), f, g, steps, converged, error, "unroll", iterates)
        parts = [
            Plan(select(problem, [i]).with_eps(e.eps), f[i:i + 1], g[i:i + 1], e.steps, e.converged,
                 None if e.error is None else e.error.reshape(1), "unroll")
            for i, e in enumerate(state)
        ]
        return StackedPlan.of(problem, parts, steps, converged, error)

    def attach(self, problem: Problem, plan: Plan, grad: str) -> Plan:
        """The base class's attachment, at each element's last ``eps / k`` (not the problem's ``eps``)."""
        if isinstance(plan, StackedPlan):
            parts = [super(ProximalPoint, self).attach(select(problem, [i]).with_eps(p.problem.eps), p, grad)
                     for i, p in enumerate(plan.parts)]
            return StackedPlan.of(problem, parts, plan.iterations, plan.converged, plan.error)
        return super().attach(problem.with_eps(plan.problem.eps), plan, grad)


@dataclass
class _Element:
    """The outer schedule of one batch element: its ``k``, the tolerance its intermediate stages must reach, its
    previous outer step's plan ``(n, m)``, and what it has done so far."""

    k: int
    rough: float
    eps: float = 0.0
    steps: int = 0
    converged: bool = False
    error: Optional[Tensor] = None
    previous: Optional[Tensor] = None


def _rough_tolerances(problem: Problem, tol: float) -> list[float]:
    """Per batch element, ``max(tol, 1e-3 * mass)``: the residual an intermediate stage must reach."""
    if tol == 0:  # nothing is measured: no device-to-host read (a compiled loss captures the whole solve)
        return [0.0] * (problem.batch_shape[0] if problem.batch_shape else 1)
    with torch.no_grad():
        mass = torch.maximum(problem.sum_rows(problem.a), problem.b.sum(-1)).reshape(-1)
    return [max(tol, 1e-3 * float(x)) for x in mass]
