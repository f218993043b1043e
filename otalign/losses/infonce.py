"""InfoNCE (NT-Xent) as the rows-only alignment: ``KL(P_tgt | softmax(s / eps))`` (docs/maths.md, section 2)."""

from __future__ import annotations

import math

from typing_extensions import Unpack

from ..divergences import kl
from .base import AlignmentLoss, LossOptions


class InfoNCE(AlignmentLoss):
    """InfoNCE: the KL divergence from the target to the rows-only plan (one exact row step).

    The plan solves ``Problem(-cos, rho_a=inf, rho_b=0, reference="uniform", mask=eye)``: each anchor's row is the
    softmax of ``s_ij / temperature`` over ``j != i``. With the pairing target the loss is NT-Xent (SimCLR); with
    ``labels=`` it is SupCon's ``L_out``; any non-negative ``target=`` works (see :mod:`otalign.losses.base`).

    Args:
        temperature: eps; default 0.5, SimCLR's value for CIFAR-10 (Chen et al. 2020, appendix B.9).
        **options: ``reduction`` (``"mean"`` | ``"sum"`` | ``"none"``: per anchor, ``(V N,)``),
            ``gather_distributed`` (use the batch gathered from all ranks: negatives from every rank), ``compat``
            (``"authors"`` for the GCA authors' cost conventions), ``solver`` and ``solver_options`` (see
            :class:`~otalign.losses.AlignmentLoss`; one row step is exact, so every solver gives the same plan).

    Example::

        >>> loss_fn = InfoNCE(temperature=0.5)
        >>> z0, z1 = torch.randn(32, 128), torch.randn(32, 128)   # two views, (N, d)
        >>> loss = loss_fn(z0, z1)
    """

    def __init__(self, temperature: float = 0.5, **options: Unpack[LossOptions]):
        super().__init__(kl, temperature=temperature, iterations=1, rho_a=math.inf, rho_b=0.0, **options)
