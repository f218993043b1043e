"""BYOL (Grill et al. 2020): an online network predicts a slowly moving (EMA) target network's projection."""

from __future__ import annotations

import copy
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import SSLModel


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """``-cos(p_i, z_i)`` averaged over the batch; ``p, z`` are ``(N, d)``. ``z`` is taken as given (the caller
    detaches it when it is a target)."""
    return -F.cosine_similarity(p, z, dim=-1).mean()


def target_momentum(base: float, progress: float) -> float:
    """BYOL's EMA coefficient: ``1 - (1 - base) (cos(pi progress) + 1) / 2``, rising from ``base`` to 1."""
    progress = min(max(progress, 0.0), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class BYOL(SSLModel):
    """BYOL: loss ``2 - 2 cos(q(z0), sg(t1)) + 2 - 2 cos(q(z1), sg(t0))`` averaged over the batch, where ``z`` are
    the online projections, ``q`` the predictor and ``t`` the target network's projections (no gradient).

    The target network (a copy of encoder + projector) is updated by :meth:`step_end` as an exponential moving
    average of the online weights, ``target <- tau target + (1 - tau) online``, with ``tau`` rising from
    ``base_tau`` to 1 along a cosine over training (:func:`target_momentum`). Its parameters never require grad.

    Example::

        >>> model = BYOL(encoder, projector, mlp_head(64, 256, 64), base_tau=0.99)
        >>> loss = model(x0, x1); loss.backward(); optimiser.step(); model.step_end(progress=step / total)
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, predictor: nn.Module, base_tau: float = 0.99):
        super().__init__(encoder, projector)
        if not 0 <= base_tau <= 1:
            raise ValueError(f"base_tau: expected a value in [0, 1], got {base_tau!r}")
        self.predictor = predictor
        self.base_tau = base_tau
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(projector)
        for parameter in self.target_parameters():
            parameter.requires_grad_(False)

    def target_parameters(self):
        """Parameters of the target network (encoder copy, then projector copy)."""
        yield from self.target_encoder.parameters()
        yield from self.target_projector.parameters()

    def online_parameters(self):
        """Online parameters matching :meth:`target_parameters` one to one."""
        yield from self.encoder.parameters()
        yield from self.projector.parameters()

    def forward(self, x0: Tensor, x1: Tensor, labels: Optional[Tensor] = None, meta: Optional[dict] = None) -> Tensor:
        n = x0.shape[0]
        p = self.predictor(self.project(torch.cat([x0, x1])))
        with torch.no_grad():
            t = self.target_projector(self.target_encoder(torch.cat([x0, x1])))
        p, t = p.float(), t.float()
        return 4 + 2 * (negative_cosine(p[:n], t[n:]) + negative_cosine(p[n:], t[:n]))

    @torch.no_grad()
    def step_end(self, progress: float) -> None:
        tau = target_momentum(self.base_tau, progress)
        for target, online in zip(self.target_parameters(), self.online_parameters()):
            if online.requires_grad:  # a frozen part (e.g. a frozen backbone) is left bit-identical
                target.mul_(tau).add_(online.detach(), alpha=1 - tau)
