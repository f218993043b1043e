"""Optimisers for SSL: SGD, Adam(W) and LARS, with biases and normalisation parameters kept out of weight decay."""

from __future__ import annotations

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio (You et al. 2017), as used by SimCLR and BYOL.

    For each parameter tensor ``w`` in a group with ``adapt=True``, the update direction
    ``d = grad + weight_decay * w`` is rescaled by ``trust * |w| / |d|`` (when both norms are > 0) before momentum.
    Groups with ``adapt=False`` (biases, normalisation) take plain SGD-with-momentum steps.

    Example::

        >>> optimiser = LARS(parameter_groups(model, weight_decay=1e-6), lr=0.3, momentum=0.9)
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, trust: float = 1e-3):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0 or trust <= 0:
            raise ValueError(
                f"lr, momentum, weight_decay, trust: need lr > 0, 0 <= momentum < 1, weight_decay >= 0, trust > 0; "
                f"got {lr}, {momentum}, {weight_decay}, {trust}"
            )
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust, adapt=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = p.grad.add(p, alpha=group["weight_decay"])
                if group["adapt"]:
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(direction)
                    ratio = torch.where(
                        (w_norm > 0) & (d_norm > 0), group["trust"] * w_norm / d_norm, torch.ones_like(w_norm)
                    )
                    direction = direction * ratio
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = direction.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(direction)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight matrices/kernels (decayed, LARS-adapted) and 1-D parameters (biases, norms; neither)."""
    decayed, plain = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (plain if parameter.ndim <= 1 else decayed).append(parameter)
    groups = [{"params": decayed, "weight_decay": weight_decay, "adapt": True}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0, "adapt": False})
    return groups


def build_optimiser(
    name: str, model: nn.Module, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """``"sgd"`` (momentum, Nesterov), ``"adam"``, ``"adamw"`` or ``"lars"`` over :func:`parameter_groups`."""
    groups = parameter_groups(model, weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    for group in groups:
        group.pop("adapt")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"name: unknown optimiser {name!r}; expected 'sgd', 'adam', 'adamw' or 'lars'")

