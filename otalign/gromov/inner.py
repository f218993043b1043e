"""The linear solve of one outer step.

A GW solve runs many linear solves to a tolerance, without a graph to record (``grad="envelope"`` or
``"detach"``) in the usual case. Sinkhorn's default soft-min serves both protocols fast: a fixed number of
iterations (``inner_tol=0``) on a cost of small spread runs the kernel-domain loop (:mod:`otalign.scaling`), and a
solve to a tolerance without a gradient runs the absorbed kernel domain (:mod:`otalign.absorption`): one
matrix-vector product per half-step, its stopping test read off the same products.
"""

from __future__ import annotations

from ..plan import Plan
from ..problem import Problem
from ..solver import Init, Solver


def linear_solve(instance: Solver, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
    """``instance(problem, max_iter, tol, init)``: the linearised problem of one outer step, warm-started."""
    return instance(problem, max_iter=max_iter, tol=tol, grad="unroll", init=init)
