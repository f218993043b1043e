"""The linear solve of one outer step.

A GW solve runs many linear solves to a tolerance. otalign's Sinkhorn runs its kernel-domain loop (matrix-vector
products, :mod:`otalign.scaling`) only for a fixed number of iterations, and the log-domain loop (one
``exp`` per entry and half-step) when it must test a tolerance. Without a graph to record (``grad="envelope"`` or
``"detach"``), on a balanced dense problem whose cost spread allows the kernel domain, :func:`linear_solve`
therefore runs the kernel loop in chunks of :data:`CHUNK` iterations, each started from the previous chunk's
potentials (the same iterates), and measures the L1 row-marginal error (the solver's own criterion) after each
chunk. It may so run up to ``CHUNK - 1`` iterations more than the log-domain loop would.
"""

from __future__ import annotations

import math

import torch

from ..plan import Plan
from ..problem import Problem
from ..solver import Init, Solver, initial_potentials

#: Kernel-domain iterations between two tests of the tolerance.
CHUNK = 10


def _kernel_path(instance: Solver, problem: Problem) -> bool:
    from ..scaling import spread_allows
    from ..solvers import Sinkhorn

    return (
        type(instance) is Sinkhorn and instance.kernel == "auto" and instance.eps_scaling is None
        and not instance.keep_iterates and math.isinf(problem.rho_a) and spread_allows(problem.geometry, problem.eps)
    )


def linear_solve(instance: Solver, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
    """``instance(problem, max_iter, tol, init)``, in kernel-domain chunks where that is faster (see above)."""
    if tol == 0 or torch.is_grad_enabled() or not _kernel_path(instance, problem):
        return instance(problem, max_iter=max_iter, tol=tol, grad="unroll", init=init)
    f, g = initial_potentials(problem, init)
    done, converged, error = 0, False, None
    while done < max_iter and not converged:
        steps = min(CHUNK, max_iter - done)
        plan = instance(problem, max_iter=steps, tol=0, grad="unroll", init=(f, g))
        f, g = plan.f, plan.g
        done += steps
        _, lse = problem.update_f(g)
        error = (problem.log_row_marginal(f, lse).exp() - problem.a).abs().sum(-1)
        converged = bool((error <= tol).all())
    return Plan(problem, f, g, done, converged, error, "unroll")
