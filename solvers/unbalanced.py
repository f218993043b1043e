"""Translation-invariant Sinkhorn for unbalanced problems (finite rho).

Plain scaling converges slowly when ``rho >> eps``: each half-step damps the potentials by
``lambda = rho / (rho + eps)``, so the total transported mass is corrected at a rate ``1 - lambda``. The dual
objective::

    D(f, g) = sum_i a_i phi_a(f_i) + sum_j b_j phi_b(g_j) - eps (|P(f, g)| - |R|),  phi(x) = rho (1 - e^{-x/rho})

is, along the translation ``(f + t, g - t)``, a function of the first two terms only (``P`` depends on ``f + g``).
Its maximiser has the closed form::

    t* = (log A - log B) / (1/rho_a + 1/rho_b),   A = sum_i a_i e^{-f_i/rho_a},  B = sum_j b_j e^{-g_j/rho_b}

(``1/inf = 0``, and then ``A = sum a``). Applying it after every Sinkhorn iteration is exact block-coordinate ascent
on the dual in the direction the slow mode lives in (Séjourné, Vialard, Peyré 2022, "Faster Unbalanced Optimal
Transport: Translation invariant Sinkhorn and 1-D Frank-Wolfe"); the fixed point, and the plan, are unchanged.
"""

from __future__ import annotations


import torch
from torch import Tensor

from otalign.problem import Problem, safe_log, where_positive
from otalign.checks import is_inf

from .registry import register
from .sinkhorn import Sinkhorn


@register("unbalanced")
class TranslationInvariantSinkhorn(Sinkhorn):
    """Sinkhorn plus the optimal dual translation after each iteration. Same options as :class:`Sinkhorn`.

    Applies when both rho are positive and at least one is finite; otherwise it is plain Sinkhorn.
    """

    def after_iteration(self, problem: Problem, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        shift = optimal_translation(problem, f, g)
        if shift is None:
            return f, g
        return f + shift.unsqueeze(-1), g - shift.unsqueeze(-1)


def optimal_translation(problem: Problem, f: Tensor, g: Tensor):
    """``t*`` of the module docstring, ``(...,)``; ``None`` when the problem has no translation mode."""
    rho_a, rho_b = problem.rho_a, problem.rho_b
    if rho_a == 0 or rho_b == 0 or (is_inf(rho_a) and is_inf(rho_b)):
        return None
    log_a_term = problem.geometry.reduce_rows(_log_mass_term(f, problem.a, rho_a), "logsumexp")
    log_b_term = _log_mass_term(g, problem.b, rho_b)
    return (log_a_term - log_b_term) / (_inverse(rho_a) + _inverse(rho_b))


def _log_mass_term(potential: Tensor, mass: Tensor, rho: float) -> Tensor:
    if is_inf(rho):
        return mass.sum(-1).log()
    # a zero mass has log -inf and, under the uniform reference, potential -inf: it contributes nothing
    return torch.logsumexp(safe_log(mass) - where_positive(mass, potential) / rho, dim=-1)


def _inverse(rho: float) -> float:
    return 0.0 if is_inf(rho) else 1.0 / rho
