"""One Sinkhorn half-step on a :class:`~otalign.problem.Problem`, through a :class:`~otalign.softmin.SoftMin`.

    f_i = lambda_a (eps ca_i - eps LSE_j[(g_j + eps log Rb_j - C_ij) / eps])

with ``ca = log a`` for the uniform reference and 0 for the product one (``Rb = b`` then), ``lambda = rho / (rho +
eps)`` (1 hard, 0 free); the column half-step is the mirror image. Every solver that runs Sinkhorn steps (Sinkhorn,
the translation-invariant solver, proximal point, GW's inner solves, implicit differentiation) calls these.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from .problem import Problem
from .softmin import LogDomain, SoftMin


def row_step(problem: Problem, g: Tensor, softmin: Optional[SoftMin] = None, hint: Optional[Tensor] = None):
    """Row half-step ``f(g)`` through ``softmin`` (default: the exact log domain). Returns ``(f (..., n), lse (..., n))``; ``lse`` is the raw log-sum-exp, the next
    call's ``hint`` and the input of :func:`log_row_marginal` (``None`` for a free side, whose potential is 0)."""
    return _half_step(problem, g, problem.log_reference_b(), problem.log_a, problem.lambda_a, 1, softmin, hint)


def col_step(problem: Problem, f: Tensor, softmin: Optional[SoftMin] = None, hint: Optional[Tensor] = None):
    """Column half-step ``g(f)``, the mirror of :func:`row_step`. Returns ``(g (..., m), lse (..., m))``."""
    return _half_step(problem, f, problem.log_reference_a(), problem.log_b, problem.lambda_b, 0, softmin, hint)


def _half_step(problem: Problem, other, log_ref_other, log_mass, lam, axis, softmin, hint):
    if lam == 0.0:
        size = problem.n if axis == 1 else problem.m
        return other.new_zeros(problem.batch_shape + (size,)), None
    h = other if log_ref_other is None else other + problem.eps * log_ref_other
    softmin = LogDomain(problem.geometry, problem.eps) if softmin is None else softmin
    lse = softmin(h, axis, hint)
    if problem.reference == "product":
        return lse.mul(-lam * problem.eps), lse
    return (lam * problem.eps) * (log_mass - lse), lse


def log_row_marginal(problem: Problem, f: Tensor, lse_rows: Tensor) -> Tensor:
    """``log (P 1)`` ``(..., n)`` from ``f`` and the ``lse`` that :func:`row_step` returned for the current ``g``."""
    log_ra = problem.log_reference_a()
    out = f / problem.eps + lse_rows
    return out if log_ra is None else out + log_ra


def log_col_marginal(problem: Problem, g: Tensor, lse_cols: Tensor) -> Tensor:
    """``log (P^T 1)`` ``(..., m)`` from ``g`` and the ``lse`` that :func:`col_step` returned for the current ``f``."""
    log_rb = problem.log_reference_b()
    out = g / problem.eps + lse_cols
    return out if log_rb is None else out + log_rb


__all__ = ["row_step", "col_step", "log_row_marginal", "log_col_marginal"]
