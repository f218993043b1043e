"""GCA-UOT: ``r1 KL + r2 robust`` on the unbalanced plan (soft marginals of strength rho) after T iterations."""

from __future__ import annotations

import math

from typing_extensions import Unpack

from ..divergences import Robust, Weighted, kl
from .base import AlignmentLoss, LossOptions
from .rince import check_robust


class GCAUOT(AlignmentLoss):
    """GCA-UOT (Chen et al. 2024, the paper's best): ``r1 * KL + r2 * robust`` per anchor.

    The plan is unbalanced: both marginals are soft KL penalties of weight ``rho``
    (``Problem(rho_a=rho, rho_b=rho, reference="uniform")``, masses 1), solved with ``iterations`` scaling
    iterations ``u <- (1 / K v)^lam_rho``, ``v <- (1 / K^T u)^lam_rho``, ``lam_rho = rho / (rho + eps)``. The KL
    term is measured on the row-normalised plan, the robust term on ``K diag(v_T)`` (see
    :mod:`otalign.losses.base`). ``rho = inf`` is the balanced problem: ``r1 * GCAInfoNCE + r2 * GCARINCE``.

    Args:
        temperature: eps; default 0.5 (the authors' value).
        iterations: T, default 10.
        rho: marginal relaxation (> 0, ``inf`` = balanced); default 0.2 (the authors' value).
        q, lam: robust term, default 0.6 and 0.01.
        r1: weight of the KL term, default 1.
        r2: weight of the robust term, default 1 (the upper end of the paper's range [0.01, 1]; the authors'
            constructor default). Note the authors' two loss files swap r1/r2 (docs/maths.md, section 5, defect 4); here r1 is
            always the KL weight.
        **options: ``solver``, ``solver_options``, ``reduction``, ``gather_distributed``, ``compat`` (see
            :class:`~otalign.losses.AlignmentLoss`).

    Example::

        >>> loss = GCAUOT(rho=0.2, r1=1.0, r2=0.1)(z0, z1)
    """

    def __init__(
        self,
        temperature: float = 0.5,
        iterations: int = 10,
        rho: float = 0.2,
        q: float = 0.6,
        lam: float = 0.01,
        r1: float = 1.0,
        r2: float = 1.0,
        **options: Unpack[LossOptions],
    ):
        q, lam = check_robust(q, lam)
        if isinstance(rho, bool) or not (isinstance(rho, (int, float)) and rho > 0):
            raise ValueError(f"rho: must be > 0 (inf = balanced), got {rho!r}")
        for name, weight in (("r1", r1), ("r2", r2)):
            number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
            if not (number and math.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name}: must be a finite number >= 0, got {weight!r}")
        divergence = Weighted([(float(r1), kl), (float(r2), Robust(q, lam))])
        super().__init__(divergence, temperature=temperature, iterations=iterations, rho_a=rho, rho_b=rho, **options)
        self.rho, self.q, self.lam, self.r1, self.r2 = float(rho), q, lam, float(r1), float(r2)
