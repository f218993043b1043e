"""GCA-InfoNCE: the KL divergence from the target to the balanced (doubly stochastic) plan after T iterations."""

from __future__ import annotations

import math

from typing_extensions import Unpack

from ..divergences import kl
from .base import AlignmentLoss, LossOptions


class GCAInfoNCE(AlignmentLoss):
    """GCA-INCE (Chen et al. 2024): rows and columns constrained, ``iterations`` Sinkhorn iterations.

    The KL is measured on the row-normalised plan after ``T`` iterations, ``rownorm(K diag(v_T))`` (the plan a
    further row step gives; see :mod:`otalign.losses.base`). ``T = 0`` would be InfoNCE; for a doubly stochastic
    target (pairing, or labels with equal class counts) the loss is non-increasing in ``T`` and never above
    InfoNCE on the same embeddings.

    Args:
        temperature: eps; default 0.5 (the GCA paper's eps).
        iterations: T, default 10 (the GCA authors' value). Gradients are unrolled through all of them.
        **options: ``solver``, ``solver_options``, ``reduction``, ``gather_distributed``, ``compat`` (see
            :class:`~otalign.losses.AlignmentLoss`).

    Example::

        >>> loss = GCAInfoNCE(temperature=0.5, iterations=10)(z0, z1)
    """

    def __init__(self, temperature: float = 0.5, iterations: int = 10, **options: Unpack[LossOptions]):
        super().__init__(kl, temperature=temperature, iterations=iterations, rho_a=math.inf, rho_b=math.inf, **options)
