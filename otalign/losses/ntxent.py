"""NT-Xent as SimCLR writes it: cross-entropy over the ``V N x (V N - 1)`` similarity logits.

Implemented directly (no plan, no solver) as the baseline the GCA losses are compared to and the reference the tests
check :class:`~otalign.losses.InfoNCE` against.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from . import gather
from .base import Batch, ContrastiveLoss


class NTXent(ContrastiveLoss):
    """SimCLR's NT-Xent (Chen et al. 2020).

    For each of the ``V N`` stacked views, the logits are ``cos(z_i, z_j) / temperature`` for the ``V N - 1``
    other rows ``j != i`` (the self-similarity is removed, not masked); the loss is the cross-entropy of the
    positive, averaged over the ``V - 1`` positives when there are more than two views.

    Args:
        temperature: default 0.5 (SimCLR on CIFAR-10).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (per anchor, ``(V N,)``).
        gather_distributed: negatives from the batch gathered across ranks.

    Only the instance pairing is supported: ``labels=`` / ``target=`` raise (use :class:`~otalign.losses.SupCon`
    or :class:`~otalign.losses.InfoNCE`).

    Example::

        >>> loss = NTXent(temperature=0.5)(z0, z1)
    """

    accepts_targets = False

    def __init__(self, temperature: float = 0.5, *, reduction: str = "mean", gather_distributed: bool = False):
        super().__init__(temperature=temperature, reduction=reduction, gather_distributed=gather_distributed)

    def per_anchor(self, batch: Batch) -> tuple[Tensor, Tensor]:
        candidates = F.normalize(batch.embeddings, dim=1)
        anchors = candidates if batch.anchors is None else F.normalize(batch.anchors, dim=1)
        rows, columns = anchors.shape[0], candidates.shape[0]
        n = columns // batch.n_views
        own = gather.self_pairs(batch.local_rows, rows, columns, candidates.device)
        # the temperature folded into the (columns, d) operand; self-pairs removed in place (the product's backward
        # does not read its output)
        logits = (anchors @ (candidates / self.temperature).T).masked_fill_(own, -torch.inf)
        index = torch.arange(rows, device=candidates.device) if batch.local_rows is None else batch.local_rows
        others = (index[:, None] + n * torch.arange(1, batch.n_views, device=candidates.device)) % columns
        if batch.n_views == 2:
            loss = F.cross_entropy(logits, others[:, 0], reduction="none")
        else:  # averaged over the V - 1 positives
            loss = -logits.log_softmax(1).gather(1, others).mean(1)
        return loss, torch.ones_like(loss)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}, reduction={self.reduction!r}"
