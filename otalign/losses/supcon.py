"""Supervised contrastive loss (Khosla et al. 2020, ``L_out``) as the rows-only alignment with the label target."""

from __future__ import annotations

from typing import Optional

from typing_extensions import Unpack

from torch import Tensor

from .base import LossOptions
from .infonce import InfoNCE


class SupCon(InfoNCE):
    """SupCon ``L_out``: InfoNCE with the target ``P_tgt[i, j] = 1[y_i = y_j], i != j`` from ``labels``.

    Per anchor ``-(1/|P(i)|) sum_{p in P(i)} log softmax_{j != i}(s_ij / eps)[p]`` over the ``V N`` stacked views.
    Needs ``labels=`` (``(N,)``) or an explicit ``target=``; without either it raises (use :class:`InfoNCE`).

    Args:
        temperature: eps; default 0.1, the value Khosla et al. (2020) report working best.
        **options: see :class:`InfoNCE`.

    Example::

        >>> loss = SupCon(temperature=0.1)(z0, z1, labels=y)      # y: (N,) class ids
    """

    def __init__(self, temperature: float = 0.1, **options: Unpack[LossOptions]):
        super().__init__(temperature, **options)

    def forward(self, *views: Tensor, labels: Optional[Tensor] = None, target: Optional[Tensor] = None) -> Tensor:
        if labels is None and target is None:
            raise ValueError("labels: SupCon needs labels= (N,) class ids or a target=; use InfoNCE without labels")
        return super().forward(*views, labels=labels, target=target)
