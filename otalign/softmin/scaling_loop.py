"""Sinkhorn iterations in scaling form on a kernel already held: the kernel domain's fixed-count loop.

On a kernel ``K (..., n, m)`` (entries ``exp`` of the logits ``-C / eps`` up to a constant) and masses ``a (..., n)``,
``b (..., m)`` (``None``: all ones), ``T`` iterations from ``v_0 (..., m)`` are

    r_t = K v_{t-1},   u_t = (a / r_t)^la,   c_t = K^T u_t,   v_t = (b / c_t)^lb,     t = 1 .. T,

two matrix-vector products and two divisions (powers for a relaxed side, ``la = rho_a / (rho_a + eps)``) per
iteration instead of a log / exp per half-step: the same iterates as the log-domain half-steps
(:mod:`otalign.halfstep`) up to rounding, while the kernel's entries stay in range (the kernel domain's spread
limit). On a CPU matrix larger than the cache an iteration reads ``K`` once, not twice (:class:`Sweep`: block by
block of rows, ``r``, ``u`` and the block's share of ``c`` while the block is in cache). Two callers share
:func:`iterate`:

* :meth:`otalign.softmin.kernel_domain.KernelDomain.scaling_iterations`: fixed-count solves without autograd
  (the engine's short dense solves, GW's inner solves);
* :class:`ScaledKernel`: the same loop as one autograd node with a hand-written backward (the adjoint recursion:
  two matrix-vector products per iteration, and ``dL/dK`` as one product of the ``2T + 1`` rank-one terms stacked
  as ``(n, 2T + 1) @ (2T + 1, m)``), used by the contrastive losses' fused path
  (:mod:`otalign.losses.fused`), where an autograd node per half-step would cost more than the loss.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def matvec(kernel: Tensor, w: Tensor) -> Tensor:
    """``K w``: ``(..., n, m), (..., m) -> (..., n)``. One matrix and one vector go through ``torch.mv`` (a
    matrix-vector kernel; ``K @ w[:, None]`` takes a matrix-matrix path up to 3x slower at 4096 x 4096 here)."""
    if kernel.dim() == 2 and w.dim() == 1:
        return torch.mv(kernel, w)
    return (kernel @ w.unsqueeze(-1)).squeeze(-1)


def rmatvec(kernel: Tensor, w: Tensor) -> Tensor:
    """``w^T K``: ``(..., n), (..., n, m) -> (..., m)``; ``torch.mv`` on the transposed view (as fast as the row
    product: no transposed copy of ``K`` is needed)."""
    if kernel.dim() == 2 and w.dim() == 1:
        return torch.mv(kernel.t(), w)
    return (w.unsqueeze(-2) @ kernel).squeeze(-2)


#: Bytes of kernel rows per block of a one-pass iteration (:class:`Sweep`): a block is read from memory once and
#: stays in a core's L2 cache (1-2 MiB on current x86 and ARM cores) for its second product.
SWEEP_BLOCK_BYTES = 1 << 20

#: Fewest rows per block for a one-pass iteration: the transposed product of a block of fewer (longer) rows is slow
#: enough to lose the pass it saves (measured on a 2-core Xeon: one pass 0.80x two at 1024 x 1024 float32, 256
#: rows a block; 0.90x at 2048 x 2048, 128 rows; slower than two passes at 4096 x 4096, 64 rows).
SWEEP_MIN_ROWS = 128


def sweep_blocks(kernel: Tensor) -> Optional[list[tuple[int, int]]]:
    """The row blocks ``[(start, stop), ...]`` of a one-pass iteration on ``kernel``, or ``None`` for two passes:
    one problem (a 2-D matrix) on the CPU, at least two blocks of :data:`SWEEP_BLOCK_BYTES` (a smaller kernel stays
    in cache anyway) of at least :data:`SWEEP_MIN_ROWS` rows each."""
    if kernel.dim() != 2 or kernel.device.type != "cpu":
        return None
    n, m = kernel.shape
    rows = SWEEP_BLOCK_BYTES // max(1, m * kernel.element_size())
    if rows < SWEEP_MIN_ROWS or n < 2 * rows:
        return None
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]


class Sweep:
    """One iteration of the module docstring's loop on a held kernel ``K (..., n, m)``: ``v -> (r, u, c, v')`` with
    ``r = K v``, ``u = (a / r)^la``, ``c = K^T u``, ``v' = (b / c)^lb`` (``a`` / ``b`` ``None``: ones).

    Where :func:`sweep_blocks` allows, one pass over ``K`` per iteration: for each block of rows ``I`` (in cache),
    ``r_I = K_I v``, ``u_I = (a_I / r_I)^la`` and ``c += K_I^T u_I`` (``u_I`` needs only its own rows' sums), so a
    memory-bound CPU loop reads ``K`` once instead of twice. Otherwise the two products, ``torch.mv`` bound once to
    the kernel and its transposed view for one problem. The same iterates up to the summation order of ``c``.
    Every call returns new tensors (a caller may keep them)."""

    def __init__(self, kernel: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam_a: float = 1.0,
                 lam_b: float = 1.0):
        self.a, self.b, self.lam_a, self.lam_b = a, b, lam_a, lam_b
        self.blocks = sweep_blocks(kernel)
        if self.blocks is not None:
            self.parts = [(kernel[start:stop], kernel[start:stop].t(), None if a is None else a[start:stop])
                          for start, stop in self.blocks]
            self.shape = (kernel.shape[0],)
        if kernel.dim() == 2:
            self.row_product = functools.partial(torch.mv, kernel)
            self.col_product = functools.partial(torch.mv, kernel.t())
        else:
            self.row_product = functools.partial(matvec, kernel)
            self.col_product = functools.partial(rmatvec, kernel)

    def __call__(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(r (..., n), u (..., n), c (..., m), v' (..., m))`` from ``v (..., m)``."""
        if self.blocks is None:
            rows = self.row_product(v)
            u, cols, v = self.from_rows(rows)
            return rows, u, cols, v
        rows, u = v.new_empty(self.shape), v.new_empty(self.shape)
        cols = None
        for (start, stop), (block, block_t, mass) in zip(self.blocks, self.parts):
            block_rows = torch.mv(block, v, out=rows[start:stop])
            block_u = _scale(mass, block_rows, self.lam_a, out=u[start:stop])
            cols = torch.mv(block_t, block_u) if cols is None else cols.addmv_(block_t, block_u)
        return rows, u, cols, _scale(self.b, cols, self.lam_b)

    def from_rows(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(u, c, v')`` of an iteration whose row sums ``r = K v`` are known."""
        u = _scale(self.a, rows, self.lam_a)
        cols = self.col_product(u)
        return u, cols, _scale(self.b, cols, self.lam_b)


def _scale(mass: Optional[Tensor], sums: Tensor, lam: float, out: Optional[Tensor] = None) -> Tensor:
    """``(mass / sums)^lam`` (``mass=None``: ones), into ``out`` if given."""
    if mass is None:
        ratio = sums.reciprocal() if out is None else torch.reciprocal(sums, out=out)
    else:
        ratio = torch.div(mass, sums) if out is None else torch.div(mass, sums, out=out)
    return ratio if lam == 1.0 else ratio.pow_(lam)


def iterate(kernel: Tensor, a: Optional[Tensor], b: Optional[Tensor], v: Tensor, iterations: int,
            lam_a: float = 1.0, lam_b: float = 1.0, saved: Optional[list[Tensor]] = None
            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``T = iterations`` iterations of the module docstring from ``v_0 = v`` (:class:`Sweep`); returns
    ``(u_T, v_T, r_T, c_T)`` (``r_T = K v_{T-1}``, ``c_T = K^T u_T``; ``T >= 1``). ``saved``: a list that receives
    ``r_t, u_t, c_t, v_t`` of every iteration (for the adjoint). No autograd: call it under ``torch.no_grad()`` or
    inside a Function."""
    u = rows = cols = v
    sweep = Sweep(kernel, a, b, lam_a, lam_b)
    for _ in range(iterations):
        rows, u, cols, v = sweep(v)
        if saved is not None:
            saved += [rows, u, cols, v]
    return u, v, rows, cols


class ScaledKernel(torch.autograd.Function):
    """From logits ``L (n, m)`` (``K = exp(L)``; ``-inf`` entries are forbidden pairs, 0 in ``K``; with
    ``exclude_diagonal`` the diagonal too: a batch's self-pairs) and an index ``(n, k)`` of positives:
    ``(v_T, K v_T, L[i, positives_i])`` after ``T`` iterations with unit masses from ``v_0 = 1`` (:func:`iterate`).
    Differentiable in ``L`` (``dL = K * dK``, zero on forbidden pairs)."""

    @staticmethod
    def forward(ctx, logits: Tensor, positives: Tensor, iterations: int, lam_a: float, lam_b: float,
                exclude_diagonal: bool = False):
        kernel = logits.exp()
        if exclude_diagonal:
            kernel.diagonal().zero_()
        v = kernel.new_ones(kernel.shape[1])
        saved = [v]
        _, v, _, _ = iterate(kernel, None, None, v, iterations, lam_a, lam_b, saved)
        row_sums = matvec(kernel, v)
        ctx.save_for_backward(kernel, positives, *saved)
        ctx.iterations, ctx.lam_a, ctx.lam_b = iterations, lam_a, lam_b
        return v, row_sums, logits.gather(1, positives)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_v: Optional[Tensor], grad_rows: Optional[Tensor], grad_positive: Optional[Tensor]):
        kernel, positives, *saved = ctx.saved_tensors
        v_last = saved[-1]
        grad_v = torch.zeros_like(v_last) if grad_v is None else grad_v
        if grad_rows is None:
            grad_rows = torch.zeros(kernel.shape[0], dtype=kernel.dtype, device=kernel.device)
        left, right = [grad_rows], [v_last]
        grad_v = grad_v + rmatvec(kernel, grad_rows)
        for t in range(ctx.iterations, 0, -1):
            v_prev, r, u, c, v = saved[4 * t - 4: 4 * t + 1]
            grad_c = (-ctx.lam_b) * grad_v * v / c
            left.append(u)
            right.append(grad_c)
            grad_r = (-ctx.lam_a) * matvec(kernel, grad_c) * u / r
            left.append(grad_r)
            right.append(v_prev)
            grad_v = rmatvec(kernel, grad_r)
        grad_logits = torch.stack(left, 1) @ torch.stack(right, 1).T
        grad_logits.mul_(kernel)
        if grad_positive is not None and positives.shape[1]:
            grad_logits.scatter_add_(1, positives, grad_positive)
        return grad_logits, None, None, None, None, None
