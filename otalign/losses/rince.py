"""RINCE (Chuang et al. 2022) as the rows-only alignment with the robust divergence."""

from __future__ import annotations

import math

from typing_extensions import Unpack

from ..divergences import Robust
from .base import AlignmentLoss, LossOptions


class RINCE(AlignmentLoss):
    """Robust InfoNCE: per anchor ``-(1/q) pos^q + (1/q) (lam * all)^q`` on the kernel ``exp(s / eps)``.

    ``pos_i = sum_j P_tgt[i, j] exp(s_ij / eps)``, ``all_i = sum_{j != i} exp(s_ij / eps)`` (positives included).
    The plan is the rows-only one (the kernel ``K diag(v)`` with ``v = 1``), so this is exactly Chuang et al.'s
    RINCE. ``q -> 0`` gives InfoNCE plus ``log(lam)``; ``q = 1`` is the W1-like linear loss.

    Args:
        temperature: eps; default 0.5.
        q: in (0, 1]; default 0.6 (the GCA authors' value).
        lam: weight of the negatives' term, default 0.01 (the GCA authors' value).
        **options: ``solver``, ``solver_options``, ``reduction``, ``gather_distributed``, ``compat`` (see
            :class:`~otalign.losses.AlignmentLoss`).

    Example::

        >>> loss = RINCE(q=0.6, lam=0.01)(z0, z1)
    """

    def __init__(self, temperature: float = 0.5, q: float = 0.6, lam: float = 0.01, **options: Unpack[LossOptions]):
        divergence = Robust(*check_robust(q, lam))
        super().__init__(divergence, temperature=temperature, iterations=1, rho_a=math.inf, rho_b=0.0, **options)
        self.q, self.lam = float(q), float(lam)


def check_robust(q: float, lam: float) -> tuple[float, float]:
    """Validate RINCE's ``q`` (in (0, 1]) and ``lam`` (>= 0); returns them as floats."""
    if isinstance(q, bool) or not (isinstance(q, (int, float)) and math.isfinite(q) and 0 < q <= 1):
        raise ValueError(f"q: must be a number in (0, 1], got {q!r}")
    if isinstance(lam, bool) or not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam: must be a finite number >= 0, got {lam!r}")
    return float(q), float(lam)
