"""Kernel-domain Sinkhorn with a fused backward: the fast path for a fixed number of iterations on bounded costs.

For a dense cost whose spread is small against eps (``(max C - min C) / eps`` at most 40 in float32, 500 in
float64), ``K = exp(-(C - min C) / eps)`` is representable, and each log-domain half-step

    lse_i = LSE_j[(g_j - C_ij)/eps + log R_b,j] = log (K w)_i + M - min C / eps,   w = exp(h - M), h = g/eps + log R_b

becomes one matrix-vector product; ``M = max h`` keeps ``w`` in (0, 1]. The iterates are those of the log-domain
loop (same updates, same order); terms dropped because ``w`` underflows are below ``m e^{-87 + 40}`` of the largest
term (float32). Gradients are not recorded step by step: :class:`_FusedScalingSinkhorn` keeps the vectors of every
half-step (O(T (n + m)) memory) and its backward runs the adjoint recursion with matrix-vector products. Every
half-step adds a rank-one term to ``dL/dK``, so all 2T of them are summed by one matrix product
``dL/dK = A B^T`` (``A (n, 2T)``, ``B (m, 2T)``) and ``dL/dC = -K * dL/dK / eps`` is one pass over the matrix —
instead of 2T passes in the unrolled log-domain backward.

Adjoint of one row half-step ``f = lam_a (eps ca - eps lse)``, ``lse = log(K w) + const``, given ``fbar``:
``lbar = -lam_a eps fbar``, ``q = lbar / (K w)``, ``hbar = w * (K^T q)`` (so ``gbar_prev = hbar / eps``), and
``Kbar += q w^T``; the column half-step is the mirror image.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from otalign.geometry import DenseCost
from otalign.problem import Problem

#: Largest cost spread / eps for which the kernel domain is used, per dtype.
SPREAD_LIMIT = {torch.float32: 40.0, torch.float64: 500.0}


def spread_allows(problem: Problem) -> bool:
    """Whether ``problem`` is dense with a cost spread / eps within :data:`SPREAD_LIMIT` (the bounds validation
    measured: no extra pass over the cost)."""
    geometry = problem.geometry
    if not isinstance(geometry, DenseCost) or problem.dtype not in SPREAD_LIMIT:
        return False
    low, high = geometry.bounds()
    return (high - low) / problem.eps <= SPREAD_LIMIT[problem.dtype]


def fused_sinkhorn(problem: Problem, f0: Tensor, g0: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """``iterations`` alternating half-steps from ``(f0, g0)`` (``f0`` unused but for its shape), differentiable
    w.r.t. the cost and the masses. Returns ``(f, g)``."""
    config = (problem.eps, problem.lambda_a, problem.lambda_b, problem.reference, iterations)
    return _FusedScalingSinkhorn.apply(problem.geometry.cost, problem.log_a, problem.log_b, f0, g0, config)


def _matvec(kernel: Tensor, w: Tensor) -> Tensor:
    return (kernel @ w.unsqueeze(-1)).squeeze(-1)


def _rmatvec(kernel: Tensor, w: Tensor) -> Tensor:
    return (w.unsqueeze(-2) @ kernel).squeeze(-2)


class _FusedScalingSinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cost, log_a, log_b, f0, g0, config):
        eps, lam_a, lam_b, reference, iterations = config
        product = reference == "product"
        offset = cost.amin((-1, -2), keepdim=True) / eps
        kernel = torch.sub(offset, cost, alpha=1.0 / eps).exp_()  # one n x m allocation
        offset = offset.squeeze(-1)
        f, g = f0, g0
        steps = []
        for _ in range(iterations):
            if lam_a > 0:
                h = g / eps + (log_b if product else 0.0)
                top = h.amax(-1, keepdim=True)
                w = torch.exp(h - top)
                sums = _matvec(kernel, w)
                lse = sums.log() + top - offset
                f = -lam_a * eps * lse if product else lam_a * eps * (log_a - lse)
                steps.append(("row", w, sums))
            else:
                f = torch.zeros_like(f0)
            if lam_b > 0:
                h = f / eps + (log_a if product else 0.0)
                top = h.amax(-1, keepdim=True)
                w = torch.exp(h - top)
                sums = _rmatvec(kernel, w)
                lse = sums.log() + top - offset
                g = -lam_b * eps * lse if product else lam_b * eps * (log_b - lse)
                steps.append(("col", w, sums))
            else:
                g = torch.zeros_like(g0)
        ctx.config, ctx.steps = config, steps
        ctx.save_for_backward(kernel)
        return f, g

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_f: Optional[Tensor], grad_g: Optional[Tensor]):
        (kernel,) = ctx.saved_tensors
        eps, lam_a, lam_b, reference, _ = ctx.config
        product = reference == "product"
        batch, n, m = kernel.shape[:-2], kernel.shape[-2], kernel.shape[-1]
        f_bar = grad_f if grad_f is not None else kernel.new_zeros(batch + (n,))
        g_bar = grad_g if grad_g is not None else kernel.new_zeros(batch + (m,))
        log_a_bar, log_b_bar = kernel.new_zeros(batch + (n,)), kernel.new_zeros(batch + (m,))
        rows, cols = [], []
        for kind, w, sums in reversed(ctx.steps):
            if kind == "col":
                lse_bar = -lam_b * eps * g_bar
                if not product:
                    log_b_bar = log_b_bar - lse_bar
                q = lse_bar / sums
                h_bar = w * _matvec(kernel, q)
                rows.append(w)
                cols.append(q)
                f_bar = f_bar + h_bar / eps
                if product:
                    log_a_bar = log_a_bar + h_bar
                g_bar = torch.zeros_like(g_bar)
            else:
                lse_bar = -lam_a * eps * f_bar
                if not product:
                    log_a_bar = log_a_bar - lse_bar
                q = lse_bar / sums
                h_bar = w * _rmatvec(kernel, q)
                rows.append(q)
                cols.append(w)
                g_bar = h_bar / eps
                if product:
                    log_b_bar = log_b_bar + h_bar
                f_bar = torch.zeros_like(f_bar)
        grad_cost = None
        if ctx.needs_input_grad[0] and rows:
            kernel_bar = torch.stack(rows, -1) @ torch.stack(cols, -1).transpose(-1, -2)
            grad_cost = kernel_bar.mul_(kernel).mul_(-1.0 / eps)
        return grad_cost, log_a_bar, log_b_bar, None, None, None
