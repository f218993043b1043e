"""Kernel-domain soft-min: the fast half-step for bounded dense costs.

For a dense cost whose spread is small against eps (``(max C - min C) / eps`` at most :data:`SPREAD_LIMIT`: 40 in
float32, 500 in float64), ``K = exp(-(C - min C) / eps)`` is representable, and the log-domain soft-min

    lse_i = LSE_j[h_j - C_ij / eps] = log (K w)_i + M - min C / eps,    w = exp(h - M),  M = max h

becomes one matrix-vector product (the mirror image, ``w^T K``, for a column half-step). Terms dropped because
``w`` underflows are below ``m e^{-87 + 40}`` of the largest one (float32), so the iterates are those of the
log-domain loop.

Gradients. A :class:`KernelDomain` is built once per solve. Each half-step is a small autograd node whose backward
gives ``dh = w * (K^T q)`` with ``q = d lse / (K w)`` and adds the rank-one term ``q w^T`` of ``dL/dK`` to a tape
instead of materialising it. All half-steps also take a 0-d *token* that stands for the cost; autograd runs the
token's backward only after every half-step's (they all consume it), and there the 2T rank-one terms are summed by
one matrix product, ``dL/dK = A B^T`` (``A (n, 2T)``, ``B (m, 2T)``), and ``dL/dC = -K * dL/dK / eps`` is a single
pass over the matrix — instead of 2T passes in an unrolled log-domain backward.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..geometry import DenseCost, Geometry
from .held import HeldKernel
from .scaling_loop import iterate, matvec, rmatvec

#: Largest cost spread / eps for which the kernel domain is used, per dtype.
SPREAD_LIMIT = {torch.float32: 40.0, torch.float64: 500.0}


def spread_allows(geometry: Geometry, eps: float) -> bool:
    """Whether ``geometry`` is a dense cost (or a sharded one's rows) whose spread / eps is within
    :data:`SPREAD_LIMIT` (read from :meth:`DenseCost.bounds`: known bounds, or the ones validation measured;
    combined over ranks when sharded, so that every rank takes the same path)."""
    dense = _dense(geometry)
    if not isinstance(dense, DenseCost) or dense.dtype not in SPREAD_LIMIT:
        return False
    low, high = dense.bounds()
    if geometry.shards > 1:
        bounds = geometry.reduce_rows(torch.tensor([-low, high], dtype=torch.float64, device=dense.device), "max")
        low, high = -float(bounds[0]), float(bounds[1])
    return (high - low) / eps <= SPREAD_LIMIT[dense.dtype]


def _dense(geometry: Geometry) -> Geometry:
    """The dense cost of this process's rows (the wrapped block of a sharded geometry)."""
    return geometry.process_local


class KernelDomain:
    """``K = exp(-(C - min C) / eps)`` of one solve, and its soft-min ``LSE[(h - C) / eps]`` (module docstring; a
    :class:`~otalign.softmin.SoftMin`).

    Args:
        geometry: a :class:`DenseCost` ``(n, m)`` or ``(B, n, m)`` (forbidden pairs are ``+inf``: ``K = 0``).
        eps: the entropic strength.

    Example::

        >>> softmin = KernelDomain(DenseCost(C), eps=0.5)
        >>> lse_rows = softmin(g, axis=1)    # (n,) = LSE_j[(g_j - C_ij) / eps]
    """

    def __init__(self, geometry: DenseCost, eps: float):
        self.eps = float(eps)
        self.geometry = geometry  # reduce_rows completes column reductions when the rows are sharded
        self.cost = _dense(geometry).cost
        self.matrix: Optional[Tensor] = None
        self.offset: Optional[Tensor] = None
        self.rows: list[Tensor] = []
        self.cols: list[Tensor] = []
        self.version = 0
        self.known: Optional[tuple[Tensor, Tensor, Tensor, Tensor]] = None  # see HeldKernel
        self.token = _KernelToken.apply(self.cost, self)

    def __call__(self, h: Tensor, axis: int, hint: Optional[Tensor] = None) -> Tensor:
        """``LSE[(h - C) / eps]`` over columns (``axis=1``, ``h (..., m)`` -> ``(..., n)``) or over rows
        (``axis=0``, ``(..., n)`` -> ``(..., m)``), differentiable w.r.t. ``h`` and the cost; ``hint`` is not
        needed (the shift is exact)."""
        h_scaled = h / self.eps
        if not (torch.is_grad_enabled() and (h.requires_grad or self.token.requires_grad)):
            with torch.no_grad():  # nothing to differentiate: no autograd node, nothing taped
                return _lse(self, h_scaled, axis)[0]
        return _KernelStep.apply(h_scaled, self.token, self, axis)

    def scaling_iterations(self, problem, g: Tensor, iterations: int) -> tuple[Tensor, Tensor, Tensor]:
        """``iterations`` balanced Sinkhorn iterations from ``g`` in scaling form, without autograd: the iterates
        of :func:`otalign.halfstep.row_step` / :func:`~otalign.halfstep.col_step` through this soft-min, up to
        rounding, in two products and two divisions per iteration (no log / exp per half-step;
        :func:`otalign.softmin.scaling_loop.iterate`, the loop the losses' fused path differentiates)::

            u = a / (K v),   v = b / (K^T u),   P = diag(u) K diag(v),

        ``v`` starting at ``exp(g / eps - max)`` (times ``b`` under the product reference; the shift keeps a warm
        start in range and is taken out again at the end). Returns ``(f (..., n), g (..., m), lse (..., m))`` of
        the last iteration, ``lse`` being the column half-step's ``LSE_i[(f_i + eps log Ra_i - C_ij) / eps]``.
        For a balanced ``problem`` on this soft-min's cost without forbidden pairs, in one process (the caller
        checks)."""
        eps = self.eps
        with torch.no_grad():
            if self.matrix is None:
                self.build()
            kernel, a, b = self.matrix, problem.a, problem.b
            g_scaled = g / eps
            top = g_scaled.amax(-1, keepdim=True)
            top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
            v = g_scaled.sub_(top).exp_()
            if problem.reference == "product":
                v.mul_(b)
            u, v, rows, cols = iterate(kernel, a, b, v, iterations)
            # the shift by top: v and rows carry exp(-top), u = a / rows and cols exp(top)
            f = (rows.log_().add_(top).sub_(self.offset)).mul_(-eps)
            lse = cols.log_().sub_(top)
            g = lse.mul(-eps)
            if problem.reference != "product":
                f.add_(problem.log_a, alpha=eps)
                g.add_(problem.log_b, alpha=eps)
        self.known = (f, g, u, v)  # P = diag(u) K diag(v) for these (f, g): the shift by top cancels
        return f, g, lse

    def held(self) -> Optional[HeldKernel]:
        """``K`` for forming a plan without an exponential (:mod:`otalign.softmin.held`): ``alpha`` is the offset,
        ``beta`` 0; ``None`` when a gradient flows to the cost through ``K`` (or it was released)."""
        if self.matrix is None or self.token.requires_grad:
            return None
        return HeldKernel(self.matrix, self.offset, torch.zeros_like(self.offset), self, self.version, self.known)

    def release(self) -> None:
        """Give up ``K``'s memory (a plan took it); a later half-step builds it again."""
        self.matrix = None
        self.version += 1

    def build(self) -> None:
        """``K = exp(offset - C / eps)``, ``offset = min C / eps`` read from the cost's bounds (no pass over the
        cost once they are known; over all ranks' rows when sharded): entries in ``[e^-spread/eps, 1]``."""
        negated_low = self.geometry.reduce_rows(torch.tensor([-_dense(self.geometry).bounds()[0]],
                                                             dtype=self.cost.dtype, device=self.cost.device), "max")
        self.offset = negated_low.reshape(()) / -self.eps
        self.matrix = torch.sub(self.offset, self.cost.detach(), alpha=1.0 / self.eps).exp_()  # one n x m allocation


def _lse(kernel: KernelDomain, h_scaled: Tensor, axis: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(LSE, w, K w)`` of one half-step (``w^T K`` for ``axis=0``)."""
    if kernel.matrix is None:
        kernel.build()
    top = h_scaled.amax(-1, keepdim=True)
    if axis == 0:
        top = kernel.geometry.reduce_rows(top, "max")
    w = torch.exp(h_scaled - top)
    sums = matvec(kernel.matrix, w) if axis == 1 else kernel.geometry.reduce_rows(rmatvec(kernel.matrix, w))
    return sums.log() + top - kernel.offset, w, sums


class _KernelToken(torch.autograd.Function):
    """Builds ``K``; its backward turns the taped rank-one terms into ``dL/dC`` in one matrix product."""

    @staticmethod
    def forward(ctx, cost: Tensor, kernel: KernelDomain) -> Tensor:
        kernel.build()
        ctx.kernel = kernel
        return cost.new_zeros(())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _unused: Tensor):
        kernel: KernelDomain = ctx.kernel
        if not kernel.rows:
            return None, None
        kernel_bar = torch.stack(kernel.rows, -1) @ torch.stack(kernel.cols, -1).transpose(-1, -2)
        kernel.rows.clear()
        kernel.cols.clear()
        return kernel_bar.mul_(kernel.matrix).mul_(-1.0 / kernel.eps), None


class _KernelStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_scaled: Tensor, token: Tensor, kernel: KernelDomain, axis: int) -> Tensor:
        out, w, sums = _lse(kernel, h_scaled, axis)
        ctx.kernel, ctx.axis = kernel, axis
        ctx.save_for_backward(w, sums)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse: Tensor):
        w, sums = ctx.saved_tensors
        kernel: KernelDomain = ctx.kernel
        if ctx.axis == 0:  # every rank's rows feed each column: sum the ranks' gradients
            grad_lse = kernel.geometry.reduce_rows(grad_lse)
        q = grad_lse / sums
        if ctx.axis == 1:
            h_bar = w * rmatvec(kernel.matrix, q)
            rows, cols = q, w
        else:
            h_bar = w * matvec(kernel.matrix, q)
            rows, cols = w, q
        token_bar = None
        if ctx.needs_input_grad[1]:
            kernel.rows.append(rows)
            kernel.cols.append(cols)
            token_bar = grad_lse.new_zeros(())
        return (h_bar if ctx.needs_input_grad[0] else None), token_bar, None, None
