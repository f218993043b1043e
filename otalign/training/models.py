"""The modules the trainer optimises: an encoder, a projection head and a way to turn two views into a loss."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .target_rules import TargetRule


class SSLModel(nn.Module):
    """Base of every self-supervised model: ``encoder`` (whose output are the features evaluation reads) and
    ``projector`` (what the objective sees).

    Subclasses implement ``forward(x0, x1, labels=None, meta=None) -> scalar loss`` for two views ``x0, x1`` of the
    same ``N`` samples (``labels (N,)`` and the batch's per-sample metadata ``meta``, e.g. ``{"domain": (N,)}``,
    for methods whose target uses them), and may override :meth:`step_end` (called after every optimiser step with the training progress in
    [0, 1], e.g. BYOL's target update).
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def features(self, x: Tensor) -> Tensor:
        """Encoder features ``(N, feature_dim)`` (before the projection head)."""
        return self.encoder(x)

    def project(self, x: Tensor) -> Tensor:
        """Projected embeddings ``(N, projection_dim)``."""
        return self.projector(self.encoder(x))

    def project_pair(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """Embeddings of both views in one encoder pass (batch statistics are shared by the two views)."""
        z = self.project(torch.cat([x0, x1]))
        return z[: x0.shape[0]], z[x0.shape[0]:]

    def step_end(self, progress: float) -> None:
        """Hook after each optimiser step; ``progress`` = finished steps / total steps."""


class ContrastiveModel(SSLModel):
    """Two views -> projections ``z0, z1`` ``(N, d)`` -> ``criterion(z0, z1, labels=... or target=...)``.

    The criterion is any ``otalign.losses`` loss. It runs outside autocast on float32 inputs: the OT losses
    (exponentials of similarities over a temperature, Sinkhorn iterations) are not safe in half precision.
    With a ``rule`` (:class:`~otalign.training.target_rules.TargetRule`) each batch's target plan is
    ``rule(labels, meta, 2)``; otherwise ``uses_labels`` passes the labels (SupCon) or the loss uses its pairing.

    Example::

        >>> model = ContrastiveModel(encoder, projector, otalign.losses.GCAUOT(temperature=0.5))
        >>> loss = model(x0, x1)
        >>> loss.backward()
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, criterion: nn.Module, uses_labels: bool = False,
                 rule: Optional[TargetRule] = None):
        super().__init__(encoder, projector)
        self.criterion = criterion
        self.uses_labels = uses_labels
        self.rule = rule

    def forward(self, x0: Tensor, x1: Tensor, labels: Optional[Tensor] = None, meta: Optional[dict] = None) -> Tensor:
        z0, z1 = self.project_pair(x0, x1)
        if (self.uses_labels or self.rule is not None) and labels is None:
            raise ValueError("labels: this method's target needs the batch labels")
        with torch.autocast(device_type=z0.device.type, enabled=False):
            if self.rule is not None:
                target = self.rule(labels, meta or {}, 2).to(device=z0.device, dtype=torch.float32)
                return self.criterion(z0.float(), z1.float(), target=target)
            return self.criterion(z0.float(), z1.float(), labels=labels if self.uses_labels else None)
