"""The log-domain soft-min: exact at any eps, blocked, online for point clouds (:class:`LogDomain`).

``logsumexp(geometry, h, eps, axis)`` computes, for a cost ``C`` given by ``geometry``,

* ``axis=1`` (reduce over columns): ``out_i = LSE_j[(h_j - C_ij) / eps]``, ``h`` of shape ``(..., m)``, out ``(..., n)``;
* ``axis=0`` (reduce over rows):    ``out_j = LSE_i[(h_i - C_ij) / eps]``, ``h`` of shape ``(..., n)``, out ``(..., m)``.

so that a Sinkhorn half-step is ``f = -eps * logsumexp(geom, g + eps log b, eps, axis=1)``.

How it is fast and safe:

* Row blocks. The cost is visited one block of rows at a time (:meth:`Geometry.row_blocks`); each block stays in
  cache and is turned into exponentials by a few in-place passes (:meth:`Geometry.logits`, clamp, exp, sum).
  Nothing of size n x m is allocated, for dense costs and point clouds alike; for point clouds with a
  squared-Euclidean or cosine cost the logits of a block come out of one augmented matrix product.
* Stabiliser hints. A log-sum-exp needs a shift. Without a guess, one pass computes it exactly: each block's
  maximum raises a running maximum and rescales the sum so far (an online log-sum-exp). A solver that passes
  ``hint`` (last iteration's output) lets the shift go into the logits themselves (for point clouds, into the
  matrix product) and saves that bookkeeping. A result that shows the hint was off by too much (a term overflowed,
  or the sum is so small that the clamped terms could exceed its round-off) is recomputed exactly, so hints change
  speed, never results.
* Tiles. Point clouds whose rows are long are visited in tiles (:meth:`Geometry.tiles`: 512 rows by a few thousand
  columns) so that each matrix product reads a cache-sized slice of the column operand.
* Exponent clamp. Arguments of ``exp`` are clamped below at -80 (float32) / -700 (float64): CPU ``exp`` of a more
  negative number takes a denormal slow path (measured here: 80x slower). The clamp changes a sum whose largest
  term is 1 by at most ``m * e^-80`` relative.
* Sharded rows. A column reduction (``axis=0``) ends with :meth:`Geometry.reduce_rows` (max, then sum of
  exponentials), which combines the ranks' partial results when the rows are split across processes
  (:mod:`otalign.distributed`); its backward sums the ranks' incoming gradients the same way.
* Memory-light autograd. Backward recomputes each block's softmax weights instead of storing them, so an unrolled
  solve keeps O(n + m) per iteration instead of O(nm).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..geometry import DenseCost, Geometry
from .compiled import fused_row_logsumexp



def exp_floor(dtype: torch.dtype) -> float:
    """The clamp applied to exponents before ``exp`` for ``dtype``."""
    return -700.0 if dtype == torch.float64 else -80.0


#: The log-domain variants: eager row blocks, one dense block, a fused ``torch.compile`` kernel, plain
#: ``torch.logsumexp``.
VARIANTS = ("blocked", "dense", "compiled", "native")


class LogDomain:
    """The log-domain soft-min of one solve (a :class:`~otalign.softmin.SoftMin`): :func:`logsumexp` bound to a
    geometry, eps, variant (:data:`VARIANTS`) and block size."""

    def __init__(self, geometry: Geometry, eps: float, variant: str = "blocked", block_rows: Optional[int] = None):
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        self.geometry, self.eps, self.variant, self.block_rows = geometry, float(eps), variant, block_rows

    def __call__(self, h: Tensor, axis: int, hint: Optional[Tensor] = None) -> Tensor:
        return logsumexp(self.geometry, h, self.eps, axis, hint, self.block_rows, self.variant)


def logsumexp(
    geometry: Geometry,
    h: Tensor,
    eps: float,
    axis: int,
    hint: Optional[Tensor] = None,
    block_rows: Optional[int] = None,
    variant: str = "blocked",
) -> Tensor:
    """Blocked, clamped, differentiable ``LSE[(h - C) / eps]`` along ``axis`` (see the module docstring).

    Args:
        geometry: the cost, ``(n, m)`` or ``(B, n, m)``.
        h: ``(..., m)`` when ``axis=1``, ``(..., n)`` when ``axis=0``.
        eps: entropic strength (> 0).
        axis: 1 reduces over columns (one value per row), 0 reduces over rows (one value per column).
        hint: optional guess of the output (e.g. the previous iteration's), used as the stabilising shift.
        block_rows: rows per block; default from :data:`otalign.geometry.BLOCK_ELEMENTS`.
        variant: ``"blocked"`` (eager row blocks; point clouds recompute each block), ``"dense"`` (one block:
            the whole matrix, fastest for small problems), ``"compiled"`` (a fused ``torch.compile`` kernel for
            dense costs, :mod:`otalign.softmin.compiled`; other geometries use the blocked path), ``"native"`` (the
            whole matrix through ``torch.logsumexp`` and autograd's own backward: what ``torch.compile`` traces).
            Backward is the blocked recomputation for the first three.
    """
    _check_arguments(geometry, h, eps, axis, hint, block_rows, variant)
    if variant == "native":
        return _native(geometry, h, eps, axis)
    if variant == "dense":
        block_rows = geometry.n
    hint = None if hint is None else hint.detach()
    return _SoftMin.apply(h, float(eps), axis, hint, (block_rows, variant), geometry, *geometry.tensors())


def _native(geometry: Geometry, h: Tensor, eps: float, axis: int) -> Tensor:
    cost = geometry.matrix()
    if axis == 1:
        return torch.logsumexp(h.unsqueeze(-2) / eps - cost / eps, dim=-1)
    return geometry.reduce_rows(torch.logsumexp(h.unsqueeze(-1) / eps - cost / eps, dim=-2), "logsumexp")


def _check_arguments(geometry, h, eps, axis, hint, block_rows, variant) -> None:
    """Cheap checks (types, shapes, devices; no pass over the data): this runs at every half-step."""
    if isinstance(axis, bool) or axis not in (0, 1) or not isinstance(axis, int):
        raise ValueError(f"axis: expected 0 or 1, got {axis!r}")
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    if not isinstance(geometry, Geometry):
        raise TypeError(f"geometry: expected an otalign Geometry (e.g. DenseCost), got {type(geometry).__name__}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (0 < eps < float("inf")):
        raise ValueError(f"eps: expected a finite number > 0, got {eps!r}")
    if block_rows is not None and (isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1):
        raise ValueError(f"block_rows: expected None or an int >= 1, got {block_rows!r}")
    expected = _shape_out(geometry, 1 - axis)
    for name, x, shape in (("h", h, expected), ("hint", hint, _shape_out(geometry, axis))):
        if name == "hint" and x is None:
            continue
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name}: expected a floating-point tensor, got {got}")
        if tuple(x.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape} for axis={axis}, got {tuple(x.shape)}")
        if x.device != geometry.device:
            raise ValueError(f"{name}: is on {x.device} but the cost is on {geometry.device}")


def _shape_out(geometry: Geometry, axis: int) -> tuple[int, ...]:
    return geometry.batch_shape + ((geometry.n,) if axis == 1 else (geometry.m,))


def _exact_pass(geometry, tensors, h_scaled, axis, eps, block_rows) -> tuple[Tensor, Tensor]:
    """``(shift, log sum exp((h - C)/eps - shift))`` along ``axis`` with the exact shift (the maximum), in one
    pass: each tile's maximum raises a running one and rescales the sum so far (an online log-sum-exp)."""
    floor = exp_floor(h_scaled.dtype)
    zero = h_scaled.new_zeros(_shape_out(geometry, axis))
    top = torch.full_like(zero, -torch.inf)
    acc = torch.zeros_like(zero)
    dim = -1 if axis == 1 else -2
    blocks = geometry.logit_blocks(tensors, h_scaled, zero, axis, eps)
    for start, stop, cols in geometry.tiles(block_rows):
        logits = blocks(start, stop, cols)
        where = (..., slice(start, stop)) if axis == 1 else (..., cols)
        old = top[where]
        new = torch.maximum(old, logits.amax(dim))
        new_finite = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
        logits.sub_(new_finite.unsqueeze(dim)).clamp_min_(floor).exp_()
        acc[where] = acc[where] * (old - new_finite).exp() + logits.sum(dim)
        top[where] = new
    top = torch.where(torch.isfinite(top), top, zero)
    if axis == 0 and geometry.shards > 1:  # every rank's rows: rescale the local sums to the global maximum
        shift = geometry.reduce_rows(top, "max")
        acc = geometry.reduce_rows(acc * (top - shift).exp(), "sum")
        top = shift
    return top, acc.log_()


def _sum_pass(geometry, tensors, h_scaled, axis, eps, shift, block_rows) -> Tensor:
    """``log sum exp((h - C)/eps - shift)`` along ``axis`` (without adding the shift back)."""
    floor = exp_floor(h_scaled.dtype)
    acc = h_scaled.new_zeros(_shape_out(geometry, axis))
    blocks = geometry.logit_blocks(tensors, h_scaled, shift, axis, eps)
    for start, stop, cols in geometry.tiles(block_rows):
        logits = blocks(start, stop, cols)
        logits.clamp_min_(floor).exp_()
        if axis == 1:
            acc[..., start:stop] += logits.sum(-1)
        else:
            acc[..., cols] += logits.sum(-2)
    if axis == 0:
        acc = geometry.reduce_rows(acc, "sum")
    return acc.log_()


def _acceptable(log_sum: Tensor, terms: int) -> bool:
    """Whether sums computed with a guessed shift are as accurate as with the exact one: finite (no term
    overflowed), and large enough that the clamped terms (at most ``terms * e^floor``) are below the dtype's
    round-off relative to the sum."""
    low = math.log(terms) + exp_floor(log_sum.dtype) - math.log(torch.finfo(log_sum.dtype).eps / 2)
    return bool(((log_sum > low) & (log_sum < math.inf)).all())


def _forward(geometry, tensors, h, eps, axis, hint, block_rows, variant) -> Tensor:
    h_scaled = h / eps
    terms = geometry.m if axis == 1 else geometry.n_global
    if variant == "compiled" and isinstance(geometry, DenseCost):
        cost = tensors[0] if axis == 1 else geometry.transposed()
        fused = fused_row_logsumexp(cost, h_scaled, hint, eps, exp_floor(h.dtype))
        if fused is not None and hint is not None and not _acceptable(fused[1], terms):
            fused = fused_row_logsumexp(cost, h_scaled, None, eps, exp_floor(h.dtype))
        if fused is not None:
            return fused[0] + fused[1]
    if hint is not None:
        log_sum = _sum_pass(geometry, tensors, h_scaled, axis, eps, hint, block_rows)
        if _acceptable(log_sum, terms):
            return hint + log_sum
    shift, log_sum = _exact_pass(geometry, tensors, h_scaled, axis, eps, block_rows)
    return shift + log_sum


class _SoftMin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, eps, axis, hint, blocking, geometry, *tensors):
        block_rows, variant = blocking
        with torch.no_grad():
            out = _forward(geometry, tensors, h, eps, axis, hint, block_rows, variant)
        ctx.eps, ctx.axis, ctx.block_rows, ctx.geometry = eps, axis, block_rows, geometry
        ctx.save_for_backward(h, out, *tensors)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        h, out, *tensors = ctx.saved_tensors
        geometry: Geometry = ctx.geometry
        eps, axis = ctx.eps, ctx.axis
        if axis == 0:  # every rank's rows feed each column: sum the ranks' gradients (sharded geometries)
            grad_out = geometry.reduce_rows(grad_out, "sum")
        needs_h = ctx.needs_input_grad[0]
        needs_t = list(ctx.needs_input_grad[6:])
        grad_h = torch.zeros_like(h) if needs_h else None
        grads_t = _zero_grads(tensors, needs_t)
        h_scaled = h / eps
        floor = exp_floor(h.dtype)
        dense = isinstance(geometry, DenseCost)
        with torch.no_grad():
            blocks = geometry.logit_blocks(tensors, h_scaled, out, axis, eps)
        for start, stop in geometry.row_blocks(ctx.block_rows):
            with torch.no_grad():
                weights = blocks(start, stop).clamp_min_(floor).exp_()
                if axis == 1:
                    g_rows = grad_out[..., start:stop]
                    if needs_h:
                        grad_h += (g_rows.unsqueeze(-2) @ weights).squeeze(-2)
                    weights.mul_(g_rows.unsqueeze(-1) * (-1.0 / eps))
                else:
                    if needs_h:
                        grad_h[..., start:stop] += (weights @ grad_out.unsqueeze(-1)).squeeze(-1)
                    weights.mul_(grad_out.unsqueeze(-2) * (-1.0 / eps))
            if any(needs_t):
                _accumulate_cost_grad(geometry, tensors, grads_t, needs_t, weights, start, stop, dense)
        if grad_h is not None:
            grad_h /= eps
        return (grad_h, None, None, None, None, None, *grads_t)


def _zero_grads(tensors: Sequence[Tensor], needs: Sequence[bool]) -> list[Optional[Tensor]]:
    return [torch.zeros_like(t) if need else None for t, need in zip(tensors, needs)]


def _accumulate_cost_grad(geometry, tensors, grads, needs, grad_block, start, stop, dense) -> None:
    """Add ``d<grad_block, C[start:stop]> / d tensors`` into ``grads``."""
    if dense:
        grads[0][..., start:stop, :] = grad_block
        return
    with torch.enable_grad():
        live = [t.detach().requires_grad_(need) for t, need in zip(tensors, needs)]
        cost = geometry.block(live, start, stop)
        wanted = [t for t, need in zip(live, needs) if need]
        parts = torch.autograd.grad(cost, wanted, grad_block)
    it = iter(parts)
    for i, need in enumerate(needs):
        if need:
            grads[i] += next(it)
