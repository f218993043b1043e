"""Accelerated Sinkhorn: Anderson acceleration of the column potential and adaptive over-relaxation (momentum).

Both change the path to the fixed point, never the fixed point: a half-step's output ``new`` is mixed with the
previous potential ``old``, and the stopping rule and the measurement of ``converged`` read the marginals of the
potentials actually kept.

* ``"auto"`` (:class:`~otalign.solvers.Sinkhorn`'s default): for a solve to a tolerance (``tol > 0``) whose
  iterations autograd does not record (``grad`` other than ``"unroll"``, or inputs without ``requires_grad``),
  on at least :data:`AUTO_MIN_ENTRIES` cost entries, :data:`AUTO_START` plain iterations, then Anderson mixing;
  plain Sinkhorn otherwise (fixed iteration counts, unrolled gradients, kept iterates, solvers that move the
  potentials after each iteration, small problems). A solve that converges within the plain iterations is exactly
  plain Sinkhorn.
* :class:`Anderson`: type-II Anderson mixing of the column potential over the map ``g -> g(f(g))``, with the last
  ``memory`` iterates; the mixing weights solve a small regularised least-squares problem per problem of a batch
  (in float64 whatever the potentials' dtype). Guarded by dual ascent (in :class:`~otalign.solvers.Sinkhorn`'s
  loop): plain half-steps never lower the dual objective; a mixed potential whose next row step did is replaced
  by its plain image (and that problem pauses mixing, for 1, 2, 4, ... up to :data:`MAX_PAUSE` iterations while
  rejections follow each other), so the kept iterates ascend the dual as plain Sinkhorn's do. A converged solve
  ends on a plain column step: its columns meet ``b`` exactly (up to rounding), as plain Sinkhorn's do, and the
  last iteration of an unconverged solve is plain as well.
* :class:`Momentum`: ``x <- x + omega (T(x) - x)`` on both potentials (successive over-relaxation in the log
  domain). ``omega=None`` (adaptive): a warm-up of plain steps measures the contraction rate ``theta`` of the
  residual, then ``omega = 2 / (1 + sqrt(1 - theta))``, the optimal relaxation for a linear iteration of that rate;
  a residual still above its value a few steps after ``omega`` was set sends that problem back to plain steps, and
  a later try uses a more cautious ``omega``. A number fixes ``omega`` in ``[1, 2)`` (with the same fallback).

Each problem of a batch keeps its own history, guard and pauses (batched = looped). Entries of a potential at
``-inf`` (zero masses) are left to the plain step; the others are mixed.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

ACCELERATIONS = ("auto", "momentum", "anderson")

#: Plain iterations before ``"auto"`` starts Anderson mixing: a solve that converges within them pays nothing.
AUTO_START = 10

#: The fewest cost entries (``batch x n x m``) for which ``"auto"`` mixes: the mixing costs a fixed ~0.3 ms of small
#: operations per iteration on a CPU core, against ~0.5 ms for a plain iteration at 1024 x 1024 (float32), so
#: smaller problems keep plain Sinkhorn (measured: at 256 x 256 the mixed iterations cost 2.5x the plain ones).
AUTO_MIN_ENTRIES = 2**20

#: The longest pause of Anderson mixing after rejected steps (see :meth:`Anderson.judge`).
MAX_PAUSE = 64


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

    start = 0  # the iteration from which the loop measures the residual and mixes

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
    """Anderson mixing of the column potential (module docstring). One instance serves one solve; it mixes from
    iteration ``start`` on (plain iterations before).

    With the residuals ``r_k = T(g_k) - g_k`` and images ``T(g_k)`` of the last ``memory + 1`` iterates, the mixed
    potential is ``T(g_k) - dG gamma`` where ``dR``, ``dG`` hold the differences of consecutive residuals and images
    and ``gamma = argmin |r_k - dR gamma|^2 + lambda |gamma|^2`` (``lambda`` relative to the mean of ``diag(dR^T
    dR)``). The differences are kept, not recomputed. Each problem of a batch keeps its own history; weights that
    are not finite restart that problem's history (and it takes the plain step). The loop guards the mixing by
    dual ascent (:meth:`judge`); where it cannot (a solver that moves the potentials after each iteration), a
    residual that grows restarts that problem's history instead (:meth:`observe`)."""

    def __init__(self, memory: int = 5, regularisation: float = 1e-10, start: int = 0):
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
            raise ValueError(f"memory: expected an int >= 1, got {memory!r}")
        self.memory = memory
        self.regularisation = regularisation
        self.start = start
        self.residual_steps: list[Tensor] = []  # r_{j+1} - r_j in float64, (..., m) each, oldest first
        self.image_steps: list[Tensor] = []  # T(g_{j+1}) - T(g_j)
        self.last: Optional[tuple[Tensor, Tensor]] = None  # (r_k, T(g_k)) of the latest iterate
        self.valid: Optional[Tensor] = None  # (...,): how many of the newest differences each problem uses
        self.fewest = 0  # the smallest entry of `valid` (all problems use every stored difference when >= k)
        self.plain: Optional[Tensor] = None  # the unmixed image of the last mixing step (None: nothing mixed)
        self.mixed: Optional[Tensor] = None  # (...,): the problems the last step mixed
        self.pause: Optional[Tensor] = None  # (...,): iterations each problem skips mixing
        self.backoff: Optional[Tensor] = None  # (...,): the length of its last pause (0: its last step was accepted)
        self.guarded = True  # the loop tests dual ascent (:meth:`judge`); else a residual that grows restarts
        self.previous: Optional[Tensor] = None

    def observe(self, error: Tensor) -> None:
        """Without the loop's dual-ascent test, a problem whose residual grew restarts its history."""
        if not self.guarded and self.previous is not None and self.valid is not None:
            rose = error > self.previous
            if bool(rose.any()):
                self.restart(rose)
        self.previous = error

    def judge(self, lowered: Tensor) -> None:
        """The loop's verdict on the last mixing step: ``lowered (...,)`` marks the problems whose mixed potential
        lowered the dual (the loop took their plain image instead). Their history stays (its pairs are still
        secants of the map); they skip mixing for a pause that doubles with each rejection in a row (at most
        :data:`MAX_PAUSE` iterations) and ends with the first accepted step."""
        rejected = lowered & self.mixed
        self.backoff = torch.where(rejected, (2 * self.backoff).clamp(1, MAX_PAUSE), 0)
        self.pause = torch.where(rejected, self.backoff, self.pause)

    def restart(self, which: Tensor) -> None:
        """Restart the history of the problems ``which (...,)`` (the next difference spans the restart)."""
        self.valid = torch.where(which, -1, self.valid)
        self.fewest = -1

    def row(self, old: Tensor, new: Tensor) -> Tensor:
        return new

    def col(self, old: Tensor, new: Tensor) -> Tensor:
        """The mixed column potential from the input ``old`` of this iteration and its image ``new``."""
        residual, image = new.detach() - old.detach(), new.detach()
        finite = torch.isfinite(residual)
        if not bool(finite.all()):  # entries at -inf (zero masses) stay out of the mixing: plain there
            residual, image = residual.where(finite, 0.0), image.where(finite, 0.0)
        else:
            finite = None
        if self.last is None:
            self.last = (residual, image)
            self.valid = torch.zeros(residual.shape[:-1], dtype=torch.long, device=residual.device)
            self.pause, self.backoff = torch.zeros_like(self.valid), torch.zeros_like(self.valid)
            return new
        self.residual_steps.append((residual - self.last[0]).double())
        self.image_steps.append(image - self.last[1])
        if len(self.residual_steps) > self.memory:
            self.residual_steps.pop(0)
            self.image_steps.pop(0)
        self.last = (residual, image)
        self.valid = (self.valid + 1).clamp_max(self.memory)
        self.fewest = min(self.fewest + 1, self.memory)
        k = len(self.residual_steps)
        d_residuals = torch.stack(self.residual_steps, -1)  # (..., m, k)
        d_images = torch.stack(self.image_steps, -1)
        kept = None
        if self.fewest < k:  # some problem restarted within the last k differences: mask its older ones
            kept = torch.arange(k, device=residual.device) >= (k - self.valid).unsqueeze(-1)  # (..., k)
            d_residuals = d_residuals.where(kept.unsqueeze(-2), 0.0)
            d_images = d_images.where(kept.unsqueeze(-2), 0.0)
        gram = d_residuals.transpose(-1, -2) @ d_residuals
        diagonal = gram.diagonal(dim1=-2, dim2=-1)
        scale = diagonal.sum(-1) / self.valid.clamp_min(1)  # the mean over the differences in use
        ridge = (self.regularisation * scale).clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(-1)
        diagonal.add_(ridge if kept is None else torch.where(kept, ridge, 1.0))  # 1: a weight of 0 for the others
        gamma, failed = torch.linalg.solve_ex(gram, d_residuals.transpose(-1, -2) @ residual.double().unsqueeze(-1))
        correction = (d_images @ gamma.to(image.dtype)).squeeze(-1)
        usable = torch.isfinite(correction).all(-1) & (failed == 0)  # (...,)
        if not bool(usable.all()):  # those problems take the plain step and restart
            self.restart(~usable)
        self.mixed = usable & (self.pause == 0)
        self.pause = (self.pause - 1).clamp_min(0)
        correction = correction.where(self.mixed.unsqueeze(-1), 0.0)
        if finite is not None:
            correction = correction.where(finite, 0.0)
        self.plain = new
        return new - correction  # the mixing carries no gradient of its own


def make(kind: Optional[str], omega: Optional[float], memory: int, automatic: bool):
    """A fresh accelerator of ``kind`` (``None``: plain Sinkhorn); ``automatic``: whether ``"auto"`` accelerates
    this solve (to a tolerance, iterations not recorded by autograd; decided by the solver)."""
    if kind is None or (kind == "auto" and not automatic):
        return None
    if kind == "momentum":
        return Momentum(omega)
    return Anderson(memory, start=AUTO_START if kind == "auto" else 0)


def check(kind: Optional[str], omega: Optional[float], memory: int) -> None:
    """Validate the solver options (errors name them)."""
    if kind is not None and kind not in ACCELERATIONS:
        raise ValueError(f"acceleration: expected None or one of {ACCELERATIONS}, got {kind!r}")
    if omega is not None and (isinstance(omega, bool) or not isinstance(omega, (int, float))
                              or not math.isfinite(omega) or not 1.0 <= omega < 2.0):
        raise ValueError(f"omega: expected a relaxation in [1, 2) or None (adaptive), got {omega!r}")
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
        raise ValueError(f"memory: expected an int >= 1, got {memory!r}")
