"""Accelerated Sinkhorn: adaptive over-relaxation (momentum) and Anderson acceleration of the potentials.

Both change the path to the fixed point, never the fixed point: a half-step's output ``new`` is mixed with the
previous potential ``old``, and the stopping rule and the measurement of ``converged`` read the marginals of the
potentials actually kept. Both are safe by default: where a step increases the marginal residual (per problem of a
batch), they fall back to plain Sinkhorn steps.

* :class:`Momentum`: ``x <- x + omega (T(x) - x)`` on both potentials (successive over-relaxation in the log
  domain). ``omega=None`` (adaptive): a warm-up of plain steps measures the contraction rate ``theta`` of the
  residual, then ``omega = 2 / (1 + sqrt(1 - theta))``, the optimal relaxation for a linear iteration of that rate;
  a residual still above its value a few steps after ``omega`` was set sends that problem back to plain steps, and
  a later try uses a more cautious ``omega``. A number fixes ``omega`` in ``[1, 2)`` (with the same fallback).
* :class:`Anderson`: type-II Anderson mixing of the column potential over the map ``g -> g(f(g))``, with the last
  ``memory`` iterates; the mixing weights solve a small regularised least-squares problem per batch element. A
  residual that grows clears the history.

Zero masses (potential ``-inf`` under the uniform reference) are left to the plain step.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

ACCELERATIONS = ("momentum", "anderson")


def _mix(old: Tensor, new: Tensor, weight: Tensor) -> Tensor:
    """``old + weight (new - old)`` where both are finite, else ``new``; ``weight (...,)`` per batch element."""
    mixed = old + weight.unsqueeze(-1) * (new - old)
    return torch.where(torch.isfinite(old) & torch.isfinite(new), mixed, new)


class Momentum:
    """Adaptive over-relaxation (module docstring). One instance serves one solve.

    A warm-up of ``warmup`` plain steps measures the rate: the geometric mean of the residual's decrease over the
    last ``window`` steps. Over-relaxed residuals first oscillate, so the check comes ``window`` steps after
    ``omega`` was set: if the residual is then above its value when ``omega`` was set, that problem falls back to
    plain steps (``omega = 1``) and, after another warm-up, tries again with half the excess ``omega - 1``."""

    def __init__(self, omega: Optional[float] = None, warmup: int = 20, window: int = 5, max_rate: float = 0.995):
        self.fixed = omega
        self.warmup, self.window, self.max_rate = warmup, window, max_rate
        self.omega: Optional[Tensor] = None
        self.history: list[Tensor] = []
        self.damping: Optional[Tensor] = None
        self.reference: Optional[Tensor] = None
        self.since = 0

    def observe(self, error: Tensor) -> None:
        """Take the marginal residual ``error (...,)`` of the current potentials."""
        if self.omega is None:
            self.omega = torch.full_like(error, 1.0 if self.fixed is None else self.fixed)
            self.damping = torch.ones_like(error)
            self.reference = error
        self.history = (self.history + [error])[-(self.window + 1):]
        self.since += 1
        if self.since == self.window:  # the check, `window` steps after omega was set
            failed = error > self.reference
            self.omega = torch.where(failed, torch.ones_like(self.omega), self.omega)
            self.damping = torch.where(failed, self.damping / 2, self.damping)
        if self.fixed is None and self.since >= self.warmup and len(self.history) > self.window:
            earlier = self.history[0].clamp_min(torch.finfo(error.dtype).tiny)
            rate = (error / earlier).clamp(0.0, self.max_rate) ** (1.0 / self.window)
            optimal = 2.0 / (1.0 + torch.sqrt(1.0 - rate))
            plain = self.omega == 1.0
            self.omega = torch.where(plain, 1.0 + self.damping * (optimal - 1.0), self.omega)
            self.reference, self.since = error, 0

    def row(self, old: Tensor, new: Tensor) -> Tensor:
        return new if self.omega is None else _mix(old, new, self.omega)

    def col(self, old: Tensor, new: Tensor) -> Tensor:
        return new if self.omega is None else _mix(old, new, self.omega)


class Anderson:
    """Anderson mixing of the column potential (module docstring). One instance serves one solve."""

    def __init__(self, memory: int = 5, regularisation: float = 1e-10):
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
            raise ValueError(f"memory: expected an int >= 1, got {memory!r}")
        self.memory = memory
        self.regularisation = regularisation
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self.previous: Optional[Tensor] = None

    def observe(self, error: Tensor) -> None:
        if self.previous is not None and bool((error > self.previous).any()):
            self.inputs.clear()
            self.outputs.clear()
        self.previous = error

    def row(self, old: Tensor, new: Tensor) -> Tensor:
        return new

    def col(self, old: Tensor, new: Tensor) -> Tensor:
        """The mixed column potential from the input ``old`` of this iteration and its image ``new``."""
        if not (bool(torch.isfinite(old).all()) and bool(torch.isfinite(new).all())):
            return new
        self.inputs.append(old.detach())
        self.outputs.append(new.detach())
        if len(self.inputs) > self.memory + 1:
            self.inputs.pop(0)
            self.outputs.pop(0)
        if len(self.inputs) < 2:
            return new
        G = torch.stack(self.outputs, -1)  # (..., m, k)
        R = G - torch.stack(self.inputs, -1)  # residuals T(x) - x
        dR, dG = R[..., 1:] - R[..., :-1], G[..., 1:] - G[..., :-1]
        gram = dR.transpose(-1, -2) @ dR
        scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).clamp_min(torch.finfo(gram.dtype).tiny)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        gamma = torch.linalg.solve(gram + self.regularisation * scale.unsqueeze(-1) * eye,
                                   (dR.transpose(-1, -2) @ R[..., -1:]))
        mixed = new.detach() - (dG @ gamma).squeeze(-1)
        mixed = torch.where(torch.isfinite(mixed), mixed, new.detach())
        return new + (mixed - new.detach())  # the mixing carries no gradient of its own


def make(kind: Optional[str], omega: Optional[float], memory: int):
    """A fresh accelerator of ``kind`` (``None``: plain Sinkhorn)."""
    if kind is None:
        return None
    if kind == "momentum":
        return Momentum(omega)
    return Anderson(memory)


def check(kind: Optional[str], omega: Optional[float], memory: int) -> None:
    """Validate the solver options (errors name them)."""
    if kind is not None and kind not in ACCELERATIONS:
        raise ValueError(f"acceleration: expected None or one of {ACCELERATIONS}, got {kind!r}")
    if omega is not None and (isinstance(omega, bool) or not isinstance(omega, (int, float))
                              or not math.isfinite(omega) or not 1.0 <= omega < 2.0):
        raise ValueError(f"omega: expected a relaxation in [1, 2) or None (adaptive), got {omega!r}")
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
        raise ValueError(f"memory: expected an int >= 1, got {memory!r}")
