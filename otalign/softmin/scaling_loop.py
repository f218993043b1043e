"""Sinkhorn iterations in scaling form on a kernel already held: the kernel domain's fixed-count loop.

On a kernel ``K (..., n, m)`` (entries ``exp`` of the logits ``-C / eps`` up to a constant) and masses ``a (..., n)``,
``b (..., m)`` (``None``: all ones), ``T`` iterations from ``v_0 (..., m)`` are

    r_t = K v_{t-1},   u_t = (a / r_t)^la,   c_t = K^T u_t,   v_t = (b / c_t)^lb,     t = 1 .. T,

two matrix-vector products and two divisions (powers for a relaxed side, ``la = rho_a / (rho_a + eps)``) per
iteration instead of a log / exp per half-step: the same iterates as the log-domain half-steps
(:mod:`otalign.halfstep`) up to rounding, while the kernel's entries stay in range (the kernel domain's spread
limit). Two callers share :func:`iterate`:

* :meth:`otalign.softmin.kernel_domain.KernelDomain.scaling_iterations`: fixed-count solves without autograd
  (the engine's short dense solves, GW's inner solves);
* :class:`ScaledKernel`: the same loop as one autograd node with a hand-written backward (the adjoint recursion:
  two matrix-vector products per iteration, and ``dL/dK`` as one product of the ``2T + 1`` rank-one terms stacked
  as ``(n, 2T + 1) @ (2T + 1, m)``), used by the contrastive losses' fused path
  (:mod:`otalign.losses.fused`), where an autograd node per half-step would cost more than the loss.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

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


def bound_products(kernel: Tensor, v: Tensor) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """``(w -> K w, w -> w^T K)`` for a loop of products with one kernel: for one problem ``torch.mv`` bound to
    the kernel and to its transposed view (made once, not per iteration), else :func:`matvec` / :func:`rmatvec`."""
    if kernel.dim() == 2 and v.dim() == 1:
        return functools.partial(torch.mv, kernel), functools.partial(torch.mv, kernel.t())
    return functools.partial(matvec, kernel), functools.partial(rmatvec, kernel)


def _scale(mass: Optional[Tensor], sums: Tensor, lam: float) -> Tensor:
    """``(mass / sums)^lam`` (``mass=None``: ones)."""
    ratio = sums.reciprocal() if mass is None else torch.div(mass, sums)
    return ratio if lam == 1.0 else ratio.pow_(lam)


def iterate(kernel: Tensor, a: Optional[Tensor], b: Optional[Tensor], v: Tensor, iterations: int,
            lam_a: float = 1.0, lam_b: float = 1.0, saved: Optional[list[Tensor]] = None
            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``T = iterations`` iterations of the module docstring from ``v_0 = v``; returns ``(u_T, v_T, r_T, c_T)``
    (``r_T = K v_{T-1}``, ``c_T = K^T u_T``; ``T >= 1``). ``saved``: a list that receives ``r_t, u_t, c_t, v_t``
    of every iteration (for the adjoint). No autograd: call it under ``torch.no_grad()`` or inside a Function."""
    u = rows = cols = v
    row_product, col_product = bound_products(kernel, v)
    for _ in range(iterations):
        rows = row_product(v)
        u = _scale(a, rows, lam_a)
        cols = col_product(u)
        v = _scale(b, cols, lam_b)
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
