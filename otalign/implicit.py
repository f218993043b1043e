"""Implicit differentiation of the Sinkhorn fixed point (``grad="implicit"``).

At convergence the potentials ``h = (f, g)`` satisfy ``h = T(h, theta)``, where ``T`` is one Jacobi sweep of the
half-steps (:func:`otalign.halfstep.row_step` with the old ``g``, :func:`~otalign.halfstep.col_step` with the old ``f``) and ``theta``
the cost tensors and masses. With ``v = dL/dh``, the implicit function theorem gives

    dL/dtheta = w^T dT/dtheta,    where  J^T w = v,   J = I - dT/dh = [[I, la Prow], [lb Pcol^T, I]],

``Prow = diag(1/r) P`` and ``Pcol = P diag(1/c)`` (``r, c`` the plan's marginals, ``la, lb`` the damping
exponents). With ``D = diag(r/la, c/lb)``, ``H = D J = [[diag(r)/la, P], [P^T, diag(c)/lb]]`` is symmetric positive
semi-definite (the dual Hessian), so ``w = D x`` with ``H x = v`` solved by preconditioned conjugate gradients. For a
balanced problem ``H`` has the null vector ``(1, -1)`` (the potentials' gauge); a loss of the plan has ``v``
orthogonal to it, and the gauge component is projected out. A free side (lambda = 0) makes the system triangular
and it is solved directly. The last step is one vector-Jacobian product of ``T`` with autograd.

Backward materialises the plan (n x m) once; the forward solve is unaffected.

Sharded rows (:mod:`otalign.distributed`): each rank holds its rows of the plan; products ``P^T x`` and the dot
products of CG over the row block are all-reduced (:meth:`Geometry.reduce_rows`), so every rank runs the same CG
iterations. The incoming gradient of the (replicated) column potential is summed over ranks first, and the final
vector-Jacobian product hands each rank ``1/R`` of the column weights (the column soft-min's backward sums them).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .halfstep import col_step, row_step
from .problem import Problem
from .softmin import LogDomain


def implicit_potentials(problem: Problem, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(f, g)`` (converged, detached) attached to ``problem``'s tensors through the fixed point."""
    tensors = problem.geometry.tensors()
    return _ImplicitFixedPoint.apply(problem, f, g, problem.a, problem.b, *tensors)


class _ImplicitFixedPoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem, f, g, a, b, *tensors):
        ctx.problem = problem
        ctx.save_for_backward(f, g, a, b, *tensors)
        return f.clone(), g.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_f, grad_g):
        f, g, a, b, *tensors = ctx.saved_tensors
        problem: Problem = ctx.problem
        geometry = problem.geometry
        with torch.no_grad():
            w_f, w_g = _adjoint(problem.detach(), f, g, grad_f, geometry.reduce_rows(grad_g))
            w_g = w_g / geometry.shards
        wants = ctx.needs_input_grad[3:]
        with torch.enable_grad():
            live = [t.detach().requires_grad_(need) for t, need in zip((a, b, *tensors), wants)]
            stepped = problem.with_tensors(live[2:], live[0], live[1])
            softmin = LogDomain(stepped.geometry, stepped.eps)
            f_next, _ = row_step(stepped, g, softmin)
            g_next, _ = col_step(stepped, f, softmin)
            inputs = [t for t, need in zip(live, wants) if need]
            outputs = [(f_next, w_f), (g_next, w_g)]
            outputs = [(o, w) for o, w in outputs if o.requires_grad]
            parts = (
                torch.autograd.grad([o for o, _ in outputs], inputs, [w for _, w in outputs], allow_unused=True)
                if inputs and outputs
                else [None] * len(inputs)
            )
        it = iter(parts)
        grads = [next(it) if need else None for need in wants]
        return (None, None, None, *grads)


def _adjoint(problem: Problem, f: Tensor, g: Tensor, v_f: Tensor, v_g: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``J^T w = v`` (module docstring)."""
    plan = problem.log_plan_block(f, g, 0, problem.n).exp()
    reduce_rows = problem.geometry.reduce_rows
    rows, cols = plan.sum(-1), reduce_rows(plan.sum(-2))
    la, lb = problem.lambda_a, problem.lambda_b
    col_normalised = plan / cols.clamp_min(1e-300).unsqueeze(-2)
    row_normalised = plan / rows.clamp_min(1e-300).unsqueeze(-1)
    if la == 0.0:
        return v_f - lb * (col_normalised @ v_g.unsqueeze(-1)).squeeze(-1), v_g
    if lb == 0.0:
        return v_f, v_g - la * reduce_rows((row_normalised.transpose(-1, -2) @ v_f.unsqueeze(-1)).squeeze(-1))
    # Rows / columns without mass (zero masses) decouple: their plan row is 0, so J^T gives w = v there. The
    # system is solved on the support, with an identity block (and right-hand side 0) elsewhere.
    on_f, on_g = rows > 0, cols > 0
    d_f = torch.where(on_f, rows / la, torch.ones_like(rows))
    d_g = torch.where(on_g, cols / lb, torch.ones_like(cols))
    rhs_f, rhs_g = v_f.masked_fill(~on_f, 0.0), v_g.masked_fill(~on_g, 0.0)
    if problem.is_balanced:  # the gauge (1, -1) on the support
        size = reduce_rows(on_f.sum(-1).to(rhs_f.dtype)) + on_g.sum(-1)
        gauge = (reduce_rows(rhs_f.sum(-1)) - rhs_g.sum(-1)) / size
        rhs_f = rhs_f - gauge.unsqueeze(-1) * on_f
        rhs_g = rhs_g + gauge.unsqueeze(-1) * on_g

    def matvec(x_f: Tensor, x_g: Tensor) -> tuple[Tensor, Tensor]:
        return (
            d_f * x_f + (plan @ x_g.unsqueeze(-1)).squeeze(-1),
            reduce_rows((plan.transpose(-1, -2) @ x_f.unsqueeze(-1)).squeeze(-1)) + d_g * x_g,
        )

    x_f, x_g = _conjugate_gradient(matvec, (rhs_f, rhs_g), (d_f, d_g), reduce_rows)
    return torch.where(on_f, d_f * x_f, v_f), torch.where(on_g, d_g * x_g, v_g)


def _conjugate_gradient(matvec, rhs, diag, reduce_rows, max_iter: int = 1000):
    """Batched Jacobi-preconditioned CG on the pair of blocks ``(f, g)``; one system per batch element.
    ``reduce_rows`` completes sums over the ``f`` block (identity unless the rows are sharded)."""

    def dot(u, v):
        return reduce_rows((u[0] * v[0]).sum(-1)) + (u[1] * v[1]).sum(-1)

    rtol = 1e-12 if rhs[0].dtype == torch.float64 else 1e-6
    x = (torch.zeros_like(rhs[0]), torch.zeros_like(rhs[1]))
    r = rhs
    z = (r[0] / diag[0], r[1] / diag[1])
    p = z
    rz = dot(r, z)
    stop = (rtol * dot(rhs, rhs).sqrt()).clamp_min(torch.finfo(rhs[0].dtype).tiny)
    for _ in range(max_iter):
        if bool((dot(r, r).sqrt() <= stop).all()):
            return x
        hp = matvec(*p)
        alpha = rz / dot(p, hp).clamp_min(torch.finfo(rhs[0].dtype).tiny)
        x = (x[0] + alpha.unsqueeze(-1) * p[0], x[1] + alpha.unsqueeze(-1) * p[1])
        r = (r[0] - alpha.unsqueeze(-1) * hp[0], r[1] - alpha.unsqueeze(-1) * hp[1])
        z = (r[0] / diag[0], r[1] / diag[1])
        rz_next = dot(r, z)
        beta = rz_next / rz.clamp_min(torch.finfo(rhs[0].dtype).tiny)
        p = (z[0] + beta.unsqueeze(-1) * p[0], z[1] + beta.unsqueeze(-1) * p[1])
        rz = rz_next
    warnings.warn("implicit differentiation: conjugate gradients did not reach tolerance; gradients are approximate")
    return x
