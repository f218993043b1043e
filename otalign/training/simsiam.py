"""SimSiam (Chen & He 2021): predict one view's projection from the other's, with a stop-gradient, no negatives."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .byol import negative_cosine
from .models import SSLModel


class SimSiam(SSLModel):
    """Symmetric negative cosine with stop-gradient: ``(D(p0, sg(z1)) + D(p1, sg(z0))) / 2``, ``D = -cos``,
    ``z = projector(encoder(x))``, ``p = predictor(z)``. Minimum ``-1``.

    Example::

        >>> model = SimSiam(encoder, projector, mlp_head(64, 32, 64))
        >>> model(x0, x1).backward()
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, predictor: nn.Module):
        super().__init__(encoder, projector)
        self.predictor = predictor

    def forward(self, x0: Tensor, x1: Tensor, labels: Optional[Tensor] = None, meta: Optional[dict] = None) -> Tensor:
        n = x0.shape[0]
        z = self.project(torch.cat([x0, x1]))
        p = self.predictor(z).float()
        z = z.detach().float()
        return (negative_cosine(p[:n], z[n:]) + negative_cosine(p[n:], z[:n])) / 2
