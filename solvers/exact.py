"""Exact (unregularised) optimal transport by the network simplex: ``solver="exact"``.

Solves ``min_P <C, P>`` over couplings with ``P 1 = a`` and ``P^T 1 = b`` (no entropy: ``eps`` is ignored) with
POT's compiled network simplex (``ot.emd``, Bonneel et al.'s C++ implementation), which must be installed:
``pip install 'otalign[pot]'``. Batched problems are solved one element at a time, in float64 on the CPU; the plan
comes back in the problem's dtype and device.

The returned :class:`~otalign.Plan` holds the plan as an explicit matrix (it is not of Gibbs form):
``plan.matrix`` is the vertex of the transport polytope the simplex ends on, ``plan.value`` is ``<C, P>``, and
``plan.f``, ``plan.g`` are the LP's dual potentials (POT's, centred), so ``<f, a> + <g, b>`` equals the value.

Gradients. The optimal value is ``max_{f + g <= C} <f, a> + <g, b>``, so (where the solution is unique) its
gradient is the plan with respect to the cost and the potentials with respect to the masses. With ``grad="unroll"``
(the default) or ``"envelope"``, ``plan.value = <C, P>`` is differentiable with respect to the cost (gradient
``P``; the plan itself is piecewise constant in the cost and is returned detached) and ``plan.dual_value`` with
respect to the masses (gradient ``f``, ``g`` up to a constant: the potentials are defined up to ``f + c, g - c``).
``grad="implicit"`` is refused (there is no Sinkhorn fixed point to differentiate) and ``"detach"`` gives none.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from otalign.plan import Plan
from otalign.problem import Problem
from otalign.solver import Init, Solver, import_backend

from .registry import register

#: POT's result code for an optimal basis (``ot.emd``'s ``log["result_code"]``).
OPTIMAL = 1


@register("exact")
class ExactSolver(Solver):
    """Network-simplex exact OT through POT's ``ot.emd`` (module docstring). No options.

    ``max_iter`` is POT's ``numItermax`` (simplex pivots), at least 100,000; ``tol`` bounds both marginal residuals
    ``|P 1 - a|_1``, ``|P^T 1 - b|_1`` measured on the plan in float64: ``converged`` is ``True`` when POT reports an
    optimal basis and both are at most ``tol``.
    """

    supports = frozenset({"unroll", "envelope", "detach", "batched", "dense", "geometry", "uniform_reference"})
    limitations = {
        "implicit": "the network simplex has no smooth fixed point; use 'envelope' (the value's gradient is the plan)",
        "fixed_iterations": "the network simplex has no iterations to differentiate through (the plan is piecewise "
                            "constant)",
        "sharded": "POT's network simplex needs all rows in one process",
        "relaxed": "exact OT needs hard marginals (rho_a = rho_b = inf); use 'sinkhorn' or 'unbalanced'",
        "masked": "give forbidden pairs a large finite cost (an infinite cost has no finite transport value)",
        "warm_start": "the network simplex starts from its own basis",
    }
    remedies = (("max_iter", "raise max_iter (simplex pivots)"),)

    def run(self, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
        ot = import_backend("ot", "exact", "pot")
        cost = problem.cost.detach()
        a, b = problem.a.detach(), problem.b.detach()
        batch = problem.batch_shape
        pieces = [(cost, a, b)] if not batch else list(zip(cost, a, b))
        solved = [_network_simplex(ot, c, x, y, max(max_iter, 100_000)) for c, x, y in pieces]
        like = problem.a
        stack = (lambda xs: xs[0]) if not batch else torch.stack
        matrix = stack([torch.from_numpy(s[0]) for s in solved]).to(like.device, like.dtype)
        f = stack([torch.from_numpy(s[1]) for s in solved]).to(like.device, like.dtype)
        g = stack([torch.from_numpy(s[2]) for s in solved]).to(like.device, like.dtype)
        error = stack([torch.tensor(s[3], dtype=torch.float64) for s in solved])
        optimal = all(s[4] == OPTIMAL for s in solved)
        converged = optimal and bool((error <= tol).all())
        if not optimal:
            messages = sorted({s[5] for s in solved if s[4] != OPTIMAL})
            warnings.warn(f"exact: the network simplex did not reach an optimal basis ({'; '.join(messages)})",
                          stacklevel=4)
        return Plan(problem, f, g, 0, converged, error.to(like.device, like.dtype), "unroll", None, explicit=matrix)

    def residuals_measured(self) -> bool:
        return True  # run() measures both marginal residuals of the plan in float64


def _network_simplex(ot, cost: Tensor, a: Tensor, b: Tensor, max_iter: int):
    """One problem through ``ot.emd`` in float64: ``(plan, f, g, residual, result_code, message)``."""
    a64 = np.ascontiguousarray(a.cpu().double().numpy())
    b64 = np.ascontiguousarray(b.cpu().double().numpy())
    c64 = np.ascontiguousarray(cost.cpu().double().numpy())
    sa, sb = a64.sum(), b64.sum()
    if abs(sa - sb) > 1e-6 * max(sa, sb):
        raise ValueError(f"a, b: the 'exact' solver needs equal total masses, got {sa:.10g} and {sb:.10g}")
    b64 = b64 * (sa / sb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, log = ot.emd(a64, b64, c64, numItermax=max_iter, log=True)
    residual = max(np.abs(plan.sum(1) - a64).sum(), np.abs(plan.sum(0) - b64).sum())
    return plan, log["u"], log["v"], float(residual), int(log["result_code"]), str(log["warning"])
