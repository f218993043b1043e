"""The projection step of low-rank Sinkhorn (:mod:`otalign.solvers.lowrank`): Dykstra's algorithm for the KL
projection of kernels ``(K_Q, K_R, K_g)`` onto the low-rank couplings

    {(Q, R, g): Q 1 = a, R 1 = b, Q^T 1 = R^T 1 = g >= alpha}

(Scetbon, Cuturi & Peyre 2021, Algorithm 2), run on scalings with log-domain offsets.

Shapes: log-kernels ``L_Q (..., n, r)``, ``L_R (..., m, r)``, ``log K_g (..., r)``, masses ``a (..., n)``,
``b (..., m)``; a leading batch dimension works throughout. The solution is ``Q = diag(e^f) K_Q diag(e^v_Q)``,
``R = diag(e^h) K_R diag(e^v_R)``: row scalings ``f (..., n)``, ``h (..., m)`` and column scalings
``v_Q``, ``v_R (..., r)``, all in logs.

How it is computed. Each side holds a *frame*: offsets ``F (..., n)``, ``H (..., r)`` and the absorbed kernel
``K = exp(L + F 1^T + 1 H^T)``, built exactly (one log-sum-exp) with ``F`` the row scaling of the frame's centre
``v0`` and ``H`` normalising every column of ``K`` to a maximum of 1. Between re-framings an iteration costs two
matrix-vector products with ``K`` and one division per row: the row scaling is held as ``u = exp(f - F)``
(``u = a / (K e^(v - H))``), the column side (length ``r``) stays in logs. While the column scaling has moved at most
``limit`` from the frame's centre (a quarter of the dtype's exponent range, e.g. 22 in float32), every product is
bounded: ``u`` and the row sums lie within ``e^(+-limit)`` of 1 and of ``a``, a column sum is at least
``e^(-limit)``. Where the scaling moves further, the side is re-framed at the current scaling (rare: the result is
unchanged, the offsets move).

Checks run every ``every`` iterations (one device-to-host read): the marginal error
``|Q 1 - a|_1 + |R 1 - b|_1`` (the column constraints hold exactly after each iteration), finiteness, and how far
the scalings moved. A block of iterations in which a scaling left the safe range is run again from its start
with a check before every product (re-framing where needed), so the result is what the exact log-domain iteration
gives. Stopping is decided at multiples of ``every`` only, for every element of a batch alike: a batch gives what
a loop over its elements would.

Warm start: ``start = (v_Q, v_R)`` (the previous projection's column scalings); the correction terms are set so
that the iteration converges to the same projection as from zero scalings (the scalings only enter the row updates;
the sums ``v + q`` of scaling and correction, which fix the solution, stay 0).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

from otalign.problem import safe_log
from otalign.softmin.scaling_loop import matvec, rmatvec

from .lowrank_dykstra_fast import dykstra_fast

#: Iterations between two checks of the error and of the scalings' range (one device-to-host read each).
CHECK_EVERY = 10


class Projection(NamedTuple):
    """What :func:`dykstra` returns: ``log Q (..., n, r)``, ``log R (..., m, r)``, ``log g (..., r)``, the marginal
    error ``|Q 1 - a|_1 + |R 1 - b|_1 (...,)``, the iterations run and the column scalings ``(v_Q, v_R)`` (logs,
    ``(..., r)`` each: the next projection's warm start)."""

    log_q: Tensor
    log_r: Tensor
    log_g: Tensor
    error: Tensor
    iterations: int
    scalings: tuple[Tensor, Tensor]


class _Frame(NamedTuple):
    """Offsets ``F (..., n)``, ``H (..., r)``, the kernel ``K = exp(L + F 1^T + 1 H^T) (..., n, r)`` and the column
    scaling ``centre (..., r)`` the frame was built at."""

    rows: Tensor
    cols: Tensor
    kernel: Tensor
    centre: Tensor


class _Side:
    """One factor of the projection (``Q`` with ``a`` or ``R`` with ``b``): its log-kernel ``L (..., n, r)`` and
    masses ``(..., n)``; the products below are against a :class:`_Frame` of it."""

    def __init__(self, log_kernel: Tensor, mass: Tensor):
        self.log_kernel = log_kernel
        self.mass = mass
        self.log_mass = safe_log(mass)
        empty = mass == 0
        self.empty: Optional[Tensor] = empty if bool(empty.any()) else None  # rows of zero mass: a zero row of K
        # what the row log-sum-exps read: finite on the zero rows (log 0 there would give a NaN gradient)
        self.finite_kernel = log_kernel if self.empty is None else log_kernel.masked_fill(empty.unsqueeze(-1), 0.0)

    def frame(self, v: Tensor) -> _Frame:
        """The frame centred at the column scaling ``v (..., r)``: ``F`` is the exact row scaling for ``v``."""
        offset_rows = self.log_mass - torch.logsumexp(self.finite_kernel + v.unsqueeze(-2), dim=-1)
        if self.empty is not None:  # log 0 - log 0 at a zero mass: a finite offset, its kernel row is exp(-inf) = 0
            offset_rows = offset_rows.masked_fill(self.empty, 0.0)
        shifted = self.log_kernel + offset_rows.unsqueeze(-1)
        offset_cols = -shifted.amax(-2)
        return _Frame(offset_rows, offset_cols, (shifted + offset_cols.unsqueeze(-2)).exp(), v)

    def row_sums(self, frame: _Frame, v: Tensor) -> Tensor:
        """``K e^(v - H)``, ``(..., n)``: the row sums of ``exp(L + F 1^T + 1 v^T)``."""
        return matvec(frame.kernel, (v - frame.cols).exp_())

    def row_scaling(self, sums: Tensor) -> Tensor:
        """``u = a / sums`` (0 at a zero mass)."""
        if self.empty is not None:
            sums = sums.masked_fill(self.empty, 1.0)
        return self.mass / sums

    def log_col_sums(self, frame: _Frame, u: Tensor) -> Tensor:
        """``log sum_i exp(L_ik + f_i)`` for the row scaling ``f = F + log u``, ``(..., r)``."""
        return rmatvec(frame.kernel, u).log() - frame.cols

    def error(self, u: Tensor, sums: Tensor) -> Tensor:
        """``|u * sums - a|_1``, ``(...,)``: the row marginal error of the factor."""
        return (u * sums - self.mass).abs().sum(-1)

    def log_factor(self, frame: _Frame, u: Tensor, v: Tensor) -> Tensor:
        """``log Q = L + (F + log u) 1^T + 1 v^T``, ``(..., n, r)``."""
        return self.log_kernel + (frame.rows + safe_log(u)).unsqueeze(-1) + v.unsqueeze(-2)


class _State(NamedTuple):
    """Dykstra's variables: row scalings ``u`` (relative to the frames), column scalings ``v`` and correction terms
    ``q`` (logs), ``g`` (log), the frames and the row sums ``s`` of the current ``v``; index 0 is ``Q``, 1 is ``R``."""

    u: tuple[Tensor, Tensor]
    v: tuple[Tensor, Tensor]
    q: tuple[Tensor, Tensor]
    q31: Tensor
    q32: Tensor
    g: Tensor
    frames: tuple[_Frame, _Frame]
    sums: tuple[Tensor, Tensor]


def dykstra(
    log_kq: Tensor, log_kr: Tensor, log_kg: Tensor, a: Tensor, b: Tensor, alpha: float, tol: Union[float, Tensor],
    max_iter: int,
    start: Optional[tuple[Tensor, Tensor]] = None, every: int = CHECK_EVERY, overwrite: bool = False,
    workspace: Optional[dict] = None,
) -> Projection:
    """KL projection of ``(exp L_Q, exp L_R, K_g)`` onto the low-rank couplings (see the module docstring).

    Stops at the first check (every ``every`` iterations) where ``|Q 1 - a|_1 + |R 1 - b|_1 <= tol``, or after
    ``max_iter`` iterations; batch elements that meet the tolerance are frozen (``tol``: a number or one per
    element, ``(...,)``). ``start``: column scalings
    ``(v_Q, v_R)`` to start from (``None``: zeros, the cold start). Returns a :class:`Projection`.

    Without a graph to record (grad mode off, or no input that needs a gradient) it runs
    :func:`~otalign.solvers.lowrank_dykstra_fast.dykstra_fast` (the same iterates, in-place and fused);
    :func:`dykstra_graph` otherwise. There, ``overwrite=True`` writes ``log Q`` and ``log R`` into ``log_kq`` and
    ``log_kr`` and ``workspace`` (a dict the caller keeps across calls) holds reusable buffers.
    """
    inputs = (log_kq, log_kr, log_kg, a, b) + (() if start is None else tuple(start))
    if not (torch.is_grad_enabled() and any(x.requires_grad for x in inputs)):
        return Projection(*dykstra_fast(log_kq, log_kr, log_kg, a, b, alpha, tol, max_iter, start, every,
                                        overwrite, workspace))
    return dykstra_graph(log_kq, log_kr, log_kg, a, b, alpha, tol, max_iter, start, every)


def dykstra_graph(
    log_kq: Tensor, log_kr: Tensor, log_kg: Tensor, a: Tensor, b: Tensor, alpha: float, tol: Union[float, Tensor],
    max_iter: int,
    start: Optional[tuple[Tensor, Tensor]] = None, every: int = CHECK_EVERY,
) -> Projection:
    """:func:`dykstra` with autograd: every operation out of place, so that the unrolled map can be
    differentiated."""
    sides = (_Side(log_kq, a), _Side(log_kr, b))
    limit = math.log(torch.finfo(log_kg.dtype).max) / 4
    log_alpha = math.log(alpha)
    zeros = torch.zeros_like(log_kg)
    v = (zeros, zeros) if start is None else start
    frames = (sides[0].frame(v[0]), sides[1].frame(v[1]))
    state = _State((zeros, zeros), v, (-v[0], -v[1]), zeros, zeros, log_kg, frames,
                   (sides[0].row_sums(frames[0], v[0]), sides[1].row_sums(frames[1], v[1])))
    error = torch.full(log_kg.shape[:-1], math.inf, dtype=log_kg.dtype, device=log_kg.device)
    active: Optional[Tensor] = None
    done = 0
    while True:
        stop = min(max_iter, done + every)
        block, moved = _run(state, sides, stop - done, log_alpha, active, None)
        err = sides[0].error(block.u[0], block.sums[0]) + sides[1].error(block.u[1], block.sums[1])
        unsafe = ~torch.isfinite(err) | (moved > limit)
        if active is not None:
            unsafe = unsafe & active
        if bool(unsafe.any()):  # rerun the block, re-framing before any product that would leave the range
            block, _ = _run(state, sides, stop - done, log_alpha, active, limit / 2)
            err = sides[0].error(block.u[0], block.sums[0]) + sides[1].error(block.u[1], block.sums[1])
        state, done = block, stop
        with torch.no_grad():
            error = err.detach() if active is None else torch.where(active, err.detach(), error)
            still = err.detach() > tol
            active = still if active is None else active & still
        if done == max_iter or not bool(active.any()):
            break
        state = _reframe(state, sides, limit / 2, active)
    log_q = sides[0].log_factor(state.frames[0], state.u[0], state.v[0])
    log_r = sides[1].log_factor(state.frames[1], state.u[1], state.v[1])
    return Projection(log_q, log_r, state.g, error, done, state.v)


def _run(state: _State, sides: tuple[_Side, _Side], count: int, log_alpha: float, active: Optional[Tensor],
         careful: Optional[float]) -> tuple[_State, Tensor]:
    """``count`` Dykstra sweeps from ``state`` (elements outside ``active`` frozen); returns the state and, per
    element, how far the column scalings used in products moved from their frames' centres. ``careful``: a side
    whose scaling moved further than this is re-framed before its next product (a device-to-host read per sweep)."""
    moved = torch.zeros_like(state.g[..., 0])
    if active is not None and bool(active.all()):
        active = None
    for _ in range(count):
        new = _sweep(state, sides, log_alpha, careful)
        if active is not None:
            new = _select(active, new, state)
        moved = torch.maximum(moved, _moved(new))
        state = new
    return state, moved


def _sweep(state: _State, sides: tuple[_Side, _Side], log_alpha: float, careful: Optional[float]) -> _State:
    """One Dykstra sweep: the row constraints (scalings ``u``) and ``g >= alpha``, then the shared column sums."""
    u = (sides[0].row_scaling(state.sums[0]), sides[1].row_scaling(state.sums[1]))
    t1, t2 = (side.log_col_sums(frame, uk) for side, frame, uk in zip(sides, state.frames, u))
    g = state.g + state.q31
    g_clamped = g.clamp_min(log_alpha)
    q31 = g - g_clamped
    v_old, q_old = state.v, state.q
    g_new = (g_clamped + state.q32 + v_old[0] + q_old[0] + t1 + v_old[1] + q_old[1] + t2) / 3
    v = (g_new - t1, g_new - t2)
    q = (v_old[0] + q_old[0] - v[0], v_old[1] + q_old[1] - v[1])
    new = _State(u, v, q, q31, g_clamped + state.q32 - g_new, g_new, state.frames, state.sums)
    if careful is not None:
        new = _reframe(new, sides, careful, None)
    sums = tuple(side.row_sums(frame, vk) for side, frame, vk in zip(sides, new.frames, v))
    return new._replace(sums=sums)


def _moved(state: _State) -> Tensor:
    """How far the column scalings are from their frames' centres (sup over both sides), ``(...,)``."""
    return torch.maximum(*((vk - frame.centre).abs().amax(-1) for vk, frame in zip(state.v, state.frames)))


def _reframe(state: _State, sides: tuple[_Side, _Side], bound: float, active: Optional[Tensor]) -> _State:
    """``state`` with each side re-framed at its current column scaling where that moved more than ``bound`` from
    the frame's centre (for the elements in ``active``); ``u`` is carried over to the new frame."""
    frames, u, sums = list(state.frames), list(state.u), list(state.sums)
    for k, side in enumerate(sides):
        far = (state.v[k] - frames[k].centre).abs().amax(-1) > bound
        if active is not None:
            far = far & active
        if not bool(far.any()):
            continue
        new = side.frame(state.v[k])
        moved_u = u[k] * (frames[k].rows - new.rows).exp()
        new_sums = side.row_sums(new, state.v[k])
        if bool(far.all()):
            frames[k], u[k], sums[k] = new, moved_u, new_sums
        else:
            frames[k] = _Frame(*(_where(far, x, y) for x, y in zip(new, frames[k])))
            u[k], sums[k] = _where(far, moved_u, u[k]), _where(far, new_sums, sums[k])
    return state._replace(frames=tuple(frames), u=tuple(u), sums=tuple(sums))


def _select(active: Tensor, new: _State, old: _State) -> _State:
    """``new`` for the elements in ``active``, ``old`` for the others."""
    pick = lambda x, y: _where(active, x, y)  # noqa: E731
    return _State(
        tuple(map(pick, new.u, old.u)), tuple(map(pick, new.v, old.v)), tuple(map(pick, new.q, old.q)),
        pick(new.q31, old.q31), pick(new.q32, old.q32), pick(new.g, old.g),
        tuple(_Frame(*map(pick, nf, of)) for nf, of in zip(new.frames, old.frames)),
        tuple(map(pick, new.sums, old.sums)),
    )


def _where(mask: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``torch.where`` with the batch mask ``mask (...,)`` broadcast over the trailing dimensions of ``x``."""
    return torch.where(mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim())), x, y)
