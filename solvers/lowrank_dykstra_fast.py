"""Dykstra's projection of low-rank Sinkhorn without a graph (:func:`otalign.solvers.lowrank_dykstra.dykstra` calls
it when no input needs a gradient): the same iteration, frames, checks and re-framing as that module's graph path,
with fewer and cheaper operations per sweep.

What differs is the bookkeeping, not the arithmetic (the iterates agree up to rounding):

* each frame's kernel is held transposed, ``K^T (..., r, n)`` contiguous: both matrix-vector products then read
  it along its rows (at ``n = 10,000``, ``r = 10`` the column product ``K^T u`` takes a third of the time it takes
  on a row-major ``K``), and the frame's row log-sum-exp reduces over the leading axis;
* the length-``r`` column variables of both sides (scalings ``v``, corrections ``q``, frame offsets ``H`` and
  centres, column sums) are stacked into ``(..., 2, r)`` tensors: one operation updates both sides;
* every per-sweep tensor is a buffer allocated once per call and updated in place (``out=`` products); the
  large ones (transposed log-kernels, first frames, row vectors) live in a ``workspace`` the caller may keep
  across calls (a fresh array of ``n r`` floats costs its page faults, as much as a few passes over it);
* the row sums run over ``R``'s kernel, then ``Q``'s, and the column sums over ``Q``'s, then ``R``'s: each sweep
  starts on the kernel the last one ended on, still in cache;
* the distance of the scalings from the frames' centres is kept as an elementwise running maximum, reduced at
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
        self.log_t = _buffer(workspace, "log_t", log_kernel.transpose(-1, -2)).copy_(log_kernel.transpose(-1, -2))
        self.mass = mass
        empty = mass == 0
        self.empty: Optional[Tensor] = empty if bool(empty.any()) else None  # rows of zero mass: zero rows of K
        self.log_mass = mass.log()  # -inf at a zero mass
        self.finite_t = self.log_t if self.empty is None else self.log_t.masked_fill(empty.unsqueeze(-2), 0.0)
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
    """Dykstra's variables for both sides. Column variables are stacked ``(..., 2, r)`` (index 0: ``Q``, 1: ``R``):
    scalings ``v``, corrections ``q``, frame offsets ``H``, frame centres, the running maximum of ``|v - centre|``;
    ``g``, ``q31``, ``q32`` are ``(..., r)`` (logs). Rows live on the :class:`_Side` objects. Every tensor here is
    a buffer written in place (views of it are taken once). ``cold``: ``v`` is zero (the first frames add no
    shift)."""

    FIELDS = ("v", "q", "cols", "centre", "moved", "g", "q31", "q32")

    def __init__(self, sides: tuple[_Side, _Side], v: Tensor, log_kg: Tensor, cold: bool):
        self.sides = sides
        self.v = v.clone()
        self.q = -v
        self.centre = v.clone()
        self.cols = torch.empty_like(v)
        self.moved = torch.zeros_like(v)
        self.g = log_kg.clone()
        self.q31 = torch.zeros_like(log_kg)
        self.q32 = torch.zeros_like(log_kg)
        self.gc = torch.empty_like(log_kg)
        self.t = torch.empty_like(v)  # scratch: column sums, then their logs
        self.z = torch.empty_like(v)  # scratch
        self.t_sides = (self.t[..., 0, :], self.t[..., 1, :])
        self.z_sides = (self.z[..., 0, :], self.z[..., 1, :])
        self.g_row = self.g.unsqueeze(-2)
        for k, side in enumerate(sides):
            offsets, self.cols[..., k, :], kernel = side.frame(None if cold else v[..., k, :], first=True)
            side.use(offsets, kernel)
        self.row_sums()

    def row_sums(self) -> None:
        torch.sub(self.v, self.cols, out=self.z).exp_()
        for k in (1, 0):  # R's kernel, then Q's: the next sweep's column sums start with Q's, still in cache
            self.sides[k].row_sums(self.z_sides[k])

    def sweep(self, log_alpha: float, careful: Optional[float], last: bool) -> None:
        """One Dykstra sweep (as the graph path's ``_sweep``), in place; ``last``: the last of its block (``u``
        kept)."""
        t, z, v, q, g, gc = self.t, self.z, self.v, self.q, self.g, self.gc
        self.sides[0].col_sums(self.t_sides[0], last)
        self.sides[1].col_sums(self.t_sides[1], last)
        t.log_().sub_(self.cols)  # log sum_i exp(L_ik + f_i), both sides
        g.add_(self.q31)
        torch.clamp_min(g, log_alpha, out=gc)
        torch.sub(g, gc, out=self.q31)
        torch.add(v.add_(q), t, out=z)  # z = v + q + t
        torch.sum(z, dim=-2, out=g).add_(gc).add_(self.q32).div_(3.0)  # the old g is no longer needed
        torch.sub(z, self.g_row, out=q)  # q = (v + q) - v_new = z - g_new
        torch.sub(self.g_row, t, out=v)
        self.q32.add_(gc).sub_(g)
        if careful is not None:
            self.reframe(careful, None)
        torch.maximum(self.moved, torch.sub(v, self.centre, out=z).abs_(), out=self.moved)
        self.row_sums()

    def reframe(self, bound: float, active: Optional[Tensor]) -> None:
        """Re-frame each side at its current column scaling where that moved more than ``bound`` from the frame's
        centre (for the elements in ``active``); ``u`` is carried over to the new frame, the row sums recomputed."""
        changed = False
        for k, side in enumerate(self.sides):
            v = self.v[..., k, :]
            far = (v - self.centre[..., k, :]).abs().amax(-1) > bound
            if active is not None:
                far = far & active
            if not bool(far.any()):
                continue
            changed = True
            offsets, cols, kernel = side.frame(v)
            current = side.current_u
            u = current * (side.offsets - offsets).exp_()
            if bool(far.all()):
                side.use(offsets, kernel)
                current.copy_(u)
                self.cols[..., k, :] = cols
                self.centre[..., k, :] = v
            else:
                side.use(_where(far, offsets, side.offsets), _where(far, kernel, side.kernel))
                current.copy_(_where(far, u, current))
                self.cols[..., k, :] = _where(far, cols, self.cols[..., k, :])
                self.centre[..., k, :] = _where(far, v, self.centre[..., k, :])
        if changed:
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
    every call)."""
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
        unsafe = ~torch.isfinite(err) | (state.moved.amax((-2, -1)) > limit)
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
    log_q, log_r = (_log_factor(side, state.v[..., k, :], overwrite) for k, side in enumerate(sides))
    return log_q, log_r, state.g, error, done, (state.v[..., 0, :], state.v[..., 1, :])


def _block(state: _State, count: int, log_alpha: float, careful: Optional[float], frozen: Optional[Tensor],
           saved: dict) -> Tensor:
    """``count`` sweeps from a fresh running maximum of the scalings' moves; the elements outside ``frozen``
    (when given) back at ``saved``. Returns the marginal error ``(...,)``."""
    state.moved.zero_()
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
