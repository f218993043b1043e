"""Per-step learning-rate schedule: linear warmup to the peak, then cosine decay to zero."""

from __future__ import annotations

import math

import torch


class WarmupCosine:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based), for ``LambdaLR``.

    ``(step + 1) / warmup`` during the first ``warmup`` steps, then ``(1 + cos(pi t)) / 2`` with ``t`` going from 0
    to 1 over the remaining steps. A plain object (ints only), so ``LambdaLR.state_dict()`` stores it as a dict.

    Example::

        >>> scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, WarmupCosine(total=1000, warmup=50))
        >>> optimiser.step(); scheduler.step()      # once per training step
    """

    def __init__(self, total: int, warmup: int = 0):
        if total < 1:
            raise ValueError(f"total: expected at least one step, got {total}")
        if not 0 <= warmup <= total:
            raise ValueError(f"warmup: expected 0 <= warmup <= total ({total}), got {warmup}")
        self.total = int(total)
        self.warmup = int(warmup)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        decay_steps = max(1, self.total - self.warmup)
        t = min(1.0, (step - self.warmup) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_cosine(
    optimiser: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepping :class:`WarmupCosine` once per optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimiser, WarmupCosine(total_steps, min(warmup_steps, total_steps)))
