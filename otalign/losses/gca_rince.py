"""GCA-RINCE: the robust divergence on the balanced plan's column-scaled kernel after T iterations."""

from __future__ import annotations

import math

from typing_extensions import Unpack

from ..divergences import Robust
from .base import AlignmentLoss, LossOptions
from .rince import check_robust


class GCARINCE(AlignmentLoss):
    """GCA-RINCE (Chen et al. 2024): RINCE's term on ``K~ = K diag(v_T)`` of the balanced plan after T iterations.

    Per anchor ``-(1/q) pos^q + (1/q) (lam * all)^q`` with ``pos_i = sum_j P_tgt[i, j] K~_ij`` and
    ``all_i = sum_j K~_ij`` (see :mod:`otalign.losses.base` for the conventions).

    Args:
        temperature: eps; default 0.5.
        iterations: T, default 10.
        q, lam: default 0.6 and 0.01 (the GCA authors' values).
        **options: ``solver``, ``solver_options``, ``reduction``, ``gather_distributed``, ``compat`` (see
            :class:`~otalign.losses.AlignmentLoss`).

    Example::

        >>> loss = GCARINCE(iterations=10, q=0.6, lam=0.01)(z0, z1)
    """

    def __init__(self, temperature: float = 0.5, iterations: int = 10, q: float = 0.6, lam: float = 0.01, **options: Unpack[LossOptions]):
        divergence = Robust(*check_robust(q, lam))
        super().__init__(divergence, temperature=temperature, iterations=iterations, rho_a=math.inf, rho_b=math.inf,
                         **options)
        self.q, self.lam = float(q), float(lam)
