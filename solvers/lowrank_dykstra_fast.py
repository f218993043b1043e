"""Dykstra's projection of low-rank Sinkhorn without a graph (:func:`otalign.solvers.lowrank_dykstra.dykstra` calls
it when no input needs a gradient): the same iteration, frames, checks and re-framing as that module's graph path,
with fewer and cheaper operations per sweep.

What differs is the bookkeeping, not the arithmetic (the iterates agree up to rounding):

* each frame's kernel is held transposed, ``K^T (..., r, n)`` contiguous: both matrix-vector products then read
  it along its rows (at ``n = 10,000``, ``r = 10`` the column product ``K^T u`` takes a third of the time it takes
  on a row-major ``K``), and the frame's row log-sum-exp reduces over the leading axis; log-kernels given stored
  transposed (``L.mT`` contiguous, as the solver keeps them) are read in place, others copied transposed once;
* the length-``r`` column variables of both sides (scalings, frame offsets ``H`` and centres, column sums) are
  stacked into ``(..., 2, r)`` tensors: one operation updates both sides; the scalings are held relative to the
  frames' offsets, their corrections (always ``-v``) are not kept and the terms of ``g``'s update are stacked
  for one reduction (:class:`_State`): 12 small operations a sweep besides the products, not 20;
* every per-sweep tensor is a buffer allocated once per call and updated in place (``out=`` products); the
  large ones (transposed log-kernels, first frames, row vectors) live in a ``workspace`` the caller may keep
  across calls (a fresh array of ``n r`` floats costs its page faults, as much as a few passes over it);
* the row sums run over ``R``'s kernel, then ``Q``'s, and the column sums over ``Q``'s, then ``R``'s: each sweep
  starts on the kernel the last one ended on, still in cache;
* the distance of the scalings from the frames' centres is kept as elementwise running extremes, reduced at
  the checks only; a block that must be re-run restores the column variables and recomputes the row sums.

Batch elements frozen by the stopping test keep, at the end of each block of ``every`` sweeps, the values they had
at its start (the graph path selects after every sweep; the frozen elements' sweeps are discarded either way).

Shapes as in :mod:`otalign.solvers.lowrank_dykstra`: log-kernels ``L_Q (..., n, r)``, ``L_R (..., m, r)``,
``log K_g (..., r)``, masses ``a (..., n)``, ``b (..., m)``.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from otalign.versions import write_count

Result = tuple[Tensor, Tensor, Tensor, Tensor, int, tuple[Tensor, Tensor]]


class _Side:
    """One factor (``Q`` with ``a`` or ``R`` with ``b``): its transposed log-kernel ``L^T (..., r, n)``, masses,
    the current frame (offsets ``F (..., n)``, kernel ``K^T (..., r, n)``) and the row buffers, ``(..., n)`` each:
    the row sums ``K e^(v - H)`` and the scaling ``u = exp(f - F) = a / sums``. Within a block of sweeps ``u`` is
    written over the sums it is computed from (one ``n``-vector less to keep in cache); the block's last sweep
    keeps it in its own buffer, for the checks, re-framing and the result: :attr:`current_u` is where it is."""

    def __init__(self, log_kernel: Tensor, mass: Tensor, workspace: dict):
        self.log_kernel = log_kernel
        self.workspace = workspace
        transposed = log_kernel.transpose(-1, -2)
        if transposed.is_contiguous():  # stored transposed already: read in place (written by _log_factor only)
            self.log_t = transposed
        else:
            self.log_t = _buffer(workspace, "log_t", transposed).copy_(transposed)
        self.mass = mass
        # rows of zero mass (zero rows of K; None: none) and log a (-inf at a zero mass), kept in the workspace for
        # the next calls with the same, unmodified masses
        known = workspace.get("mass")
        count = write_count(mass)  # None (an inference tensor): not verifiable, recomputed
        if known is None or known[0] is not mass or count is None or known[1] != count:
            empty = mass == 0
            known = workspace["mass"] = (mass, count, empty if bool(empty.any()) else None, mass.log())
        self.empty: Optional[Tensor] = known[2]
        self.log_mass: Tensor = known[3]
        self.finite_t = self.log_t if self.empty is None else self.log_t.masked_fill(self.empty.unsqueeze(-2), 0.0)
        self.u, self.sums, self.scratch = (_buffer(workspace, name, mass) for name in ("u", "sums", "scratch"))
        self.current_u = self.u
        self.offsets = self.kernel = self.kernel_t = torch.empty(0)

    def frame(self, v: Optional[Tensor], first: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """The frame centred at the column scaling ``v (..., r)`` (``None``: zeros): ``F (..., n)`` (the exact row
        scaling for ``v``), ``H (..., r)`` (every column of the kernel at a maximum of 1) and ``K^T (..., r, n)``.
        ``first``: the kernel goes into the workspace's buffer (later frames are new tensors: a block's start may
        be restored)."""
        out = _buffer(self.workspace, "kernel", self.log_t) if first else None
        lowest = torch.finfo(self.log_t.dtype).min  # an all -inf row: log 0 = -inf, as logsumexp
        if v is None:  # the row log-sum-exp over axis -2, in place
            top = self.finite_t.amax(-2).clamp_min_(lowest)
            work = torch.sub(self.finite_t, top.unsqueeze(-2), out=out)
        else:
            work = torch.add(self.finite_t, v.unsqueeze(-1), out=out)
            top = work.amax(-2).clamp_min_(lowest)
            work.sub_(top.unsqueeze(-2))
        offsets = work.exp_().sum(-2).log_().add_(top).neg_().add_(self.log_mass)
        if self.empty is not None:  # log 0 - log 0 at a zero mass: a finite offset, its kernel row is exp(-inf) = 0
            offsets.masked_fill_(self.empty, 0.0)
        shifted = torch.add(self.log_t, offsets.unsqueeze(-2), out=work)
        cols = shifted.amax(-1).neg_()
        return offsets, cols, shifted.add_(cols.unsqueeze(-1)).exp_()

    def use(self, offsets: Tensor, kernel: Tensor) -> None:
        """Take the frame ``(F, K^T)``."""
        self.offsets, self.kernel, self.kernel_t = offsets, kernel, kernel.transpose(-1, -2)

    def row_sums(self, weights: Tensor) -> None:
        """``sums = K e^(v - H)`` for ``weights = e^(v - H) (..., r)`` (1 at zero masses: ``u = a / sums`` is 0
        there)."""
        if self.kernel.dim() == 2:
            torch.mv(self.kernel_t, weights, out=self.sums)
        else:
            torch.matmul(self.kernel_t, weights.unsqueeze(-1), out=self.sums.unsqueeze(-1))
        if self.empty is not None:
            self.sums.masked_fill_(self.empty, 1.0)

    def col_sums(self, out: Tensor, keep: bool) -> None:
        """``out = K^T u``, ``(..., r)``, after ``u = a / sums`` (written over the sums unless ``keep``)."""
        u = self.current_u = torch.div(self.mass, self.sums, out=self.u if keep else self.sums)
        if self.kernel.dim() == 2:
            torch.mv(self.kernel, u, out=out)
        else:
            out.copy_(torch.matmul(self.kernel, u.unsqueeze(-1)).squeeze(-1))

    def error(self) -> Tensor:
        """``|u * sums - a|_1``, ``(...,)``."""
        return torch.mul(self.u, self.sums, out=self.scratch).sub_(self.mass).abs_().sum(-1)


class _State:
    """Dykstra's variables for both sides, written in place; every tensor here is a buffer (views of it are taken
    once). Column variables are stacked ``(..., 2, r)`` (index 0: ``Q``, 1: ``R``); ``g``, ``q31`` are ``(..., r)``
    (logs). Rows live on the :class:`_Side` objects.

    Representation (the iterates of the plain iteration up to rounding, fewer operations per sweep):

    * the column scalings are held shifted by the frames' column offsets, ``s = v - H``: the row sums' weights are
      ``e^s`` and ``v = s + H`` is formed only where it is needed (re-framing, the checks, the result);
    * the scalings' corrections ``q`` are not kept: they start at ``-v`` and every sweep keeps ``v + q`` at exactly
      0 (``q_new = (v + q + t) - g = -(g - t) = -v_new`` in floating point), so ``v + q + t`` is ``t``;
    * ``X (..., 4, r)`` stacks the terms of the new ``g``: the logs of both sides' column sums ``log K^T u``, the
      clamped ``g`` and ``q32 - H_Q - H_R`` (the correction carrying both frames' offsets), so that
      ``g = (sum of X's rows) / 3`` is one reduction;
    * the distance of the scalings from the frames' centres is tracked as elementwise running extremes of ``s``
      (``|v - centre|`` is ``s - (centre - H)``), reduced at the checks only."""

    FIELDS = ("s", "cols", "centre", "g", "q31", "q32")

    def __init__(self, sides: tuple[_Side, _Side], v: Tensor, log_kg: Tensor, cold: bool):
        self.sides = sides
        self.centre = v.clone()
        self.cols = torch.empty_like(v)
        for k, side in enumerate(sides):
            offsets, self.cols[..., k, :], kernel = side.frame(None if cold else v[..., k, :], first=True)
            side.use(offsets, kernel)
        self.s = v - self.cols
        self.g = log_kg.clone()
        self.q31 = torch.zeros_like(log_kg)
        self.X = log_kg.new_empty(log_kg.shape[:-1] + (4, log_kg.shape[-1]))
        self.logs, self.gc, self.q32 = self.X[..., :2, :], self.X[..., 2, :], self.X[..., 3, :]
        torch.sum(self.cols, dim=-2, out=self.q32).neg_()
        self.sums = torch.empty_like(v)  # the column sums K^T u of both sides
        self.sums_sides = (self.sums[..., 0, :], self.sums[..., 1, :])
        self.weights = torch.empty_like(v)  # e^s
        self.weight_sides = (self.weights[..., 0, :], self.weights[..., 1, :])
        self.high, self.low = torch.empty_like(v), torch.empty_like(v)  # running extremes of s within a block
        self.g_row = self.g.unsqueeze(-2)
        self.row_sums()

    def row_sums(self) -> None:
        torch.exp(self.s, out=self.weights)
        for k in (1, 0):  # R's kernel, then Q's: the next sweep's column sums start with Q's, still in cache
            self.sides[k].row_sums(self.weight_sides[k])

    def v(self) -> Tensor:
        """The column scalings ``v = s + H``, ``(..., 2, r)`` (a new tensor)."""
        return self.s + self.cols

    def sweep(self, log_alpha: float, careful: Optional[float], last: bool) -> None:
        """One Dykstra sweep (as the graph path's ``_sweep``), in place; ``last``: the last of its block (``u``
        kept)."""
        g, gc = self.g, self.gc
        self.sides[0].col_sums(self.sums_sides[0], last)
        self.sides[1].col_sums(self.sums_sides[1], last)
        torch.log(self.sums, out=self.logs)
        g.add_(self.q31)
        torch.clamp_min(g, log_alpha, out=gc)
        torch.sub(g, gc, out=self.q31)
        torch.sum(self.X, dim=-2, out=g).div_(3.0)  # the old g is no longer needed
        self.q32.add_(gc).sub_(g)
        torch.sub(self.g_row, self.logs, out=self.s)  # s = v - H = g - log K^T u
        if careful is not None:
            self.reframe(careful, None, rows=False)
        torch.maximum(self.high, self.s, out=self.high)
        torch.minimum(self.low, self.s, out=self.low)
        self.row_sums()

    def start_block(self) -> None:
        """Reset the running extremes of ``s`` to the frames' centres (a move of 0)."""
        torch.sub(self.centre, self.cols, out=self.high)
        self.low.copy_(self.high)

    def moved(self) -> Tensor:
        """How far the scalings moved from the frames' centres since :meth:`start_block`, ``(...,)`` (read after
        blocks without re-framing only: a careful block moves frames and is not checked again)."""
        shift = self.centre - self.cols
        return torch.maximum(self.high - shift, shift - self.low).amax((-2, -1))

    def reframe(self, bound: float, active: Optional[Tensor], rows: bool = True) -> None:
        """Re-frame each side at its current column scaling where that moved more than ``bound`` from the frame's
        centre (for the elements in ``active``); ``u`` is carried over to the new frame; ``rows``: the row sums are
        recomputed (else the caller does)."""
        changed = False
        v = self.v()
        for k, side in enumerate(self.sides):
            vk = v[..., k, :]
            far = (vk - self.centre[..., k, :]).abs().amax(-1) > bound
            if active is not None:
                far = far & active
            if not bool(far.any()):
                continue
            changed = True
            offsets, cols, kernel = side.frame(vk)
            current = side.current_u
            u = current * (side.offsets - offsets).exp_()
            old_cols = self.cols[..., k, :].clone()
            if bool(far.all()):
                side.use(offsets, kernel)
                current.copy_(u)
                self.cols[..., k, :] = cols
                self.centre[..., k, :] = vk
            else:
                side.use(_where(far, offsets, side.offsets), _where(far, kernel, side.kernel))
                current.copy_(_where(far, u, current))
                self.cols[..., k, :] = _where(far, cols, old_cols)
                self.centre[..., k, :] = _where(far, vk, self.centre[..., k, :])
            self.q32.add_(old_cols).sub_(self.cols[..., k, :])  # it carries -H_Q - H_R
            torch.sub(vk, self.cols[..., k, :], out=self.s[..., k, :])
        if changed and rows:
            self.row_sums()

    def snapshot(self, rows: bool) -> dict:
        """Copies of the column variables a block of sweeps changes, the frames (replaced, never written: kept by
        reference) and, with ``rows``, the row buffers (without, :meth:`restore` recomputes the row sums; ``u`` is
        set from them by the first sweep)."""
        out: dict = {name: getattr(self, name).clone() for name in self.FIELDS}
        for k, side in enumerate(self.sides):
            out[k] = (side.offsets, side.kernel) + ((side.u.clone(), side.sums.clone()) if rows else ())
        return out

    def restore(self, saved: dict, keep: Optional[Tensor] = None) -> None:
        """Back to ``saved``; with ``keep (...,)`` (and a snapshot with rows): only the elements outside ``keep``,
        the others stay."""
        for name in self.FIELDS:
            now = getattr(self, name)
            now.copy_(saved[name] if keep is None else _where(keep, now, saved[name]))
        for k, side in enumerate(self.sides):
            offsets, kernel = saved[k][:2]
            if keep is None:
                side.use(offsets, kernel)
                continue
            side.use(_where(keep, side.offsets, offsets), _where(keep, side.kernel, kernel))
            side.u.copy_(_where(keep, side.u, saved[k][2]))
            side.sums.copy_(_where(keep, side.sums, saved[k][3]))
        if keep is None:
            self.row_sums()


def dykstra_fast(
    log_kq: Tensor, log_kr: Tensor, log_kg: Tensor, a: Tensor, b: Tensor, alpha: float, tol: Union[float, Tensor],
    max_iter: int, start: Optional[tuple[Tensor, Tensor]], every: int, overwrite: bool = False,
    workspace: Optional[dict] = None,
) -> Result:
    """The graph path's ``dykstra`` (same arguments) without a graph; returns ``(log Q, log R, log g, error,
    iterations, (v_Q, v_R))``. ``overwrite``: ``log Q`` and ``log R`` are written into ``log_kq`` and ``log_kr``.
    ``workspace``: a dict kept by the caller across calls, whose buffers (the transposed log-kernels and the
    first frames' kernels) are reused while the shapes agree (a fresh large tensor costs its page faults at
    every call), as are the logs of the masses while the same mass tensors come unmodified."""
    workspace = {} if workspace is None else workspace
    sides = (_Side(log_kq, a, workspace.setdefault("Q", {})), _Side(log_kr, b, workspace.setdefault("R", {})))
    limit = math.log(torch.finfo(log_kg.dtype).max) / 4
    log_alpha = math.log(alpha)
    shape = log_kg.shape[:-1] + (2, log_kg.shape[-1])
    v = log_kg.new_zeros(shape) if start is None else torch.stack(start, dim=-2).to(log_kg.dtype)
    state = _State(sides, v, log_kg, cold=start is None)
    error = torch.full(log_kg.shape[:-1], math.inf, dtype=log_kg.dtype, device=log_kg.device)
    active: Optional[Tensor] = None
    done = 0
    while True:
        stop = min(max_iter, done + every)
        frozen = active is not None and not bool(active.all())
        saved = state.snapshot(rows=frozen)
        err = _block(state, stop - done, log_alpha, None, active if frozen else None, saved)
        unsafe = ~torch.isfinite(err) | (state.moved() > limit)
        if active is not None:
            unsafe = unsafe & active
        if bool(unsafe.any()):  # rerun the block, re-framing before any product that would leave the range
            state.restore(saved)
            err = _block(state, stop - done, log_alpha, limit / 2, active if frozen else None, saved)
        done = stop
        error = err if active is None else torch.where(active, err, error)
        still = err > tol
        active = still if active is None else active & still
        if done == max_iter or not bool(active.any()):
            break
        state.reframe(limit / 2, active)
    v = state.v()
    log_q, log_r = (_log_factor(side, v[..., k, :], overwrite) for k, side in enumerate(sides))
    return log_q, log_r, state.g, error, done, (v[..., 0, :], v[..., 1, :])


def _block(state: _State, count: int, log_alpha: float, careful: Optional[float], frozen: Optional[Tensor],
           saved: dict) -> Tensor:
    """``count`` sweeps from fresh running extremes of the scalings; the elements outside ``frozen``
    (when given) back at ``saved``. Returns the marginal error ``(...,)``."""
    state.start_block()
    for i in range(count):
        state.sweep(log_alpha, careful, i == count - 1)
    if frozen is not None:
        state.restore(saved, frozen)
    return state.sides[0].error() + state.sides[1].error()


def _log_factor(side: _Side, v: Tensor, overwrite: bool) -> Tensor:
    """``log Q = L + (F + log u) 1^T + 1 v^T``, ``(..., n, r)`` (``overwrite``: in ``L``'s memory)."""
    rows = side.u.log().add_(side.offsets)
    out = side.log_kernel if overwrite else None
    return torch.add(side.log_kernel, rows.unsqueeze(-1), out=out).add_(v.unsqueeze(-2))


def _buffer(workspace: dict, key: str, like: Tensor) -> Tensor:
    """``workspace[key]``, a contiguous tensor of ``like``'s shape, dtype and device (made on first use or when
    those changed)."""
    buffer = workspace.get(key)
    if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype or buffer.device != like.device:
        buffer = workspace[key] = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    return buffer


def _where(mask: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``torch.where`` with the batch mask ``mask (...,)`` broadcast over the trailing dimensions of ``x``."""
    return torch.where(mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim())), x, y)
