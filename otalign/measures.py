"""Divergences between measures: the Sinkhorn divergence (docs/divergence.md).

For measures ``alpha = sum_i a_i delta_{x_i}`` and ``beta = sum_j b_j delta_{y_j}``, entropic strength ``eps`` and
marginal penalty ``rho`` (``inf``: balanced), with ``OT`` the optimum of :class:`otalign.Problem` under the product
reference measure,

    S(alpha, beta) = OT(alpha, beta) - OT(alpha, alpha) / 2 - OT(beta, beta) / 2 + eps / 2 (m(alpha) - m(beta))^2

(``m`` the total mass; the last term vanishes when balanced). It is computed from the potentials: with ``f_ba``,
``g_ab`` those of ``OT(alpha, beta)`` and ``f_aa``, ``g_bb`` the symmetric ones of the self-terms, balanced

    S = <a, f_ba - f_aa> + <b, g_ab - g_bb>

and unbalanced

    S = (rho + eps / 2) (<a, exp(-f_aa / rho) - exp(-f_ba / rho)> + <b, exp(-g_bb / rho) - exp(-g_ab / rho)>)

and without debiasing (``debias=False``) the same formulas with ``f_aa = g_bb = 0`` (balanced: ``OT(alpha, beta)``;
unbalanced: ``OT(alpha, beta) + eps (m(alpha) + m(beta)) / 2 - eps m(alpha) m(beta)``, geomloss's raw value).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Union

import torch
from torch import Tensor

from .costs import CostFn, get_cost
from .geometry import PointCloud
from .problem import Problem
from .solving import solve
from .solver import ConvergenceWarning
from .symmetric_sinkhorn import (
    Potentials, SymmetricTerms, annealing_schedule, bounding_diameter, symmetric_potential,
)
from .checks import check_number, is_inf

METHODS = ("annealing", "sinkhorn")
GRADS = ("envelope", "unroll")
#: The exponent p of the ground costs whose annealing may start at ``diameter^p`` without being told.
#: Above this many cost entries per problem, ``dense=None`` recomputes cost blocks instead of storing matrices.
DENSE_LIMIT = 5000 ** 2
#: Costs whose blocks come out of one matrix product: ``dense=None`` never stores them (faster than reading them).


def sinkhorn_divergence(
    x: Union[Tensor, PointCloud, Problem],
    y: Optional[Tensor] = None,
    a: Optional[Tensor] = None,
    b: Optional[Tensor] = None,
    *,
    eps: Optional[float] = None,
    rho: float = math.inf,
    cost: Union[str, CostFn] = "half_sqeuclidean",
    debias: bool = True,
    method: str = "annealing",
    eps_scaling: float = 0.25,
    eps_start: Optional[float] = None,
    grad: str = "envelope",
    dense: Optional[bool] = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    geomloss_gradient: bool = False,
) -> Tensor:
    """The (debiased) Sinkhorn divergence between ``(a, x)`` and ``(b, y)`` (module docstring).

    Args:
        x: source points ``(n, d)`` or batched ``(B, n, d)``; or a :class:`~otalign.PointCloud` (then ``y`` and
            ``cost`` come from it); or a :class:`~otalign.Problem` over a point cloud (then also ``a``, ``b``,
            ``eps`` and ``rho = rho_a = rho_b``; its reference must be ``"product"``).
        y: target points ``(m, d)`` / ``(B, m, d)``.
        a, b: non-negative masses ``(..., n)``, ``(..., m)``; default uniform ``1/n``, ``1/m``.
        eps: entropic strength in cost units (required unless ``x`` is a Problem).
        rho: marginal penalty, the same on both sides (``inf``: balanced, masses must then have equal totals).
        cost: a name of :data:`otalign.costs.COSTS` or a symmetric callable ``(x (..., k, d), y (..., m, d)) ->
            (..., k, m)``. ``"half_sqeuclidean"`` is geomloss's ``p = 2``, ``"euclidean"`` its ``p = 1``.
        debias: subtract the self-terms (``False``: the raw entropic cost of ``OT(alpha, beta)``).
        method: ``"annealing"`` (default): symmetric averaged steps, one per eps of
            :func:`~otalign.symmetric_sinkhorn.annealing_schedule` from ``eps_start`` down by ``eps_scaling``
            (geomloss's scheme: a fixed, small number of steps, not a converged solve); ``"sinkhorn"``: each OT
            problem solved to ``tol``: ``OT(a, b)`` by :func:`otalign.solve` (``"sinkhorn"`` with ``eps_scaling``),
            the self-terms by averaged symmetric steps after the same schedule (one batched problem when ``n == m``).
        eps_scaling: ratio in (0, 1) of successive eps values (geomloss's ``scaling ** p``).
        eps_start: first eps of the schedule; default ``diameter ** p`` with ``diameter`` the bounding box's
            diagonal and ``p`` the cost's exponent (1 or 2; other costs must give it).
        grad: ``"envelope"`` (default): the potentials are found without autograd and one last step of every
            potential is differentiated with the other side's potential and masses held fixed: at convergence, the
            gradient of the divergence (envelope theorem); it is what geomloss returns. ``"unroll"``: autograd
            through every step.
        dense: store the cost matrices (``True``) or recompute cost blocks from the points (``False``: memory
            O((n + m) d)); default: recompute for the costs with an inner-product form (one matrix product per
            block, faster than reading a stored matrix), else store up to :data:`DENSE_LIMIT` entries.
        max_iter, tol: the solves of ``method="sinkhorn"``.
        geomloss_gradient: unbalanced only: weight the exponential terms by ``rho + eps / 2`` in the gradient as in
            the value, which is what ``geomloss`` 0.3 computes (its intended ``rho + eps`` backward is never called);
            the envelope gradient (default, ``False``) weights them by ``rho + eps`` (the derivative of the
            unbalanced dual; Séjourné et al. 2019, Prop. 12): geomloss's gradients are then ``(rho + eps / 2) /
            (rho + eps)`` times the true ones.

    Returns:
        ``()`` or ``(B,)``: the divergence, differentiable w.r.t. ``x``, ``y``, ``a``, ``b``.

    Example::

        >>> x, y = torch.randn(500, 3), torch.randn(400, 3) + 1
        >>> otalign.sinkhorn_divergence(x, y, eps=0.05 ** 2)
    """
    x, y, a, b, eps, rho, cost = _measures(x, y, a, b, eps, rho, cost)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if grad not in GRADS:
        raise ValueError(f"grad: expected one of {GRADS}, got {grad!r}")
    eps_scaling = check_number("eps_scaling", eps_scaling, strict=True)
    if not eps_scaling < 1:
        raise ValueError(f"eps_scaling: expected a ratio in (0, 1), got {eps_scaling!r}")
    if dense is None:
        dense = get_cost(cost).form is None and x.shape[-2] * y.shape[-2] <= DENSE_LIMIT
    schedule = _schedule(x, y, cost, eps, eps_scaling, eps_start)
    if method == "annealing":
        potentials = _anneal(x, y, a, b, cost, rho, eps, debias, dense, schedule, grad)
    else:
        potentials = _converge(x, y, a, b, cost, rho, eps, debias, dense, eps_scaling, schedule, grad, max_iter,
                               tol)
    last = SymmetricTerms(x, y, a, b, cost, rho, debias, dense, detach_columns=grad == "envelope", eps=eps)
    if grad == "envelope":
        potentials = Potentials(*[t.detach() for t in potentials.as_list()])
    final, _ = last.step(eps, potentials)
    envelope = grad == "envelope" and not geomloss_gradient and not is_inf(rho)
    return divergence_value(final, a, b, eps, rho, rho + eps if envelope else None)


def divergence_value(potentials: Potentials, a: Tensor, b: Tensor, eps: float, rho: float,
                     backward_weight: Optional[float] = None) -> Tensor:
    """The divergence (or the raw cost when there are no self-potentials) from the potentials (module docstring),
    ``(...)``. Unbalanced, the exponential terms are weighted by ``rho + eps / 2`` in the value and by
    ``backward_weight`` in the gradient (``rho + eps`` for the envelope gradient, see :func:`sinkhorn_divergence`;
    default: the same as the value's)."""
    zero_a, zero_b = torch.zeros_like(potentials.f_ba), torch.zeros_like(potentials.g_ab)
    f_aa = zero_a if potentials.f_aa is None else potentials.f_aa
    g_bb = zero_b if potentials.g_bb is None else potentials.g_bb
    if is_inf(rho):
        return (a * (potentials.f_ba - f_aa)).sum(-1) + (b * (potentials.g_ab - g_bb)).sum(-1)
    weight = rho + eps / 2
    rows = (-f_aa / rho).exp() - (-potentials.f_ba / rho).exp()
    cols = (-g_bb / rho).exp() - (-potentials.g_ab / rho).exp()
    total = (a * rows).sum(-1) + (b * cols).sum(-1)
    if backward_weight is None or backward_weight == weight:
        return weight * total
    return _Weighted.apply(total, weight, backward_weight)


class _Weighted(torch.autograd.Function):
    """``forward_weight * t`` whose gradient is ``backward_weight * grad``."""

    @staticmethod
    def forward(ctx, t: Tensor, forward_weight: float, backward_weight: float) -> Tensor:
        ctx.backward_weight = backward_weight
        return forward_weight * t

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.backward_weight * grad, None, None


def _anneal(x, y, a, b, cost, rho, eps, debias, dense, schedule, grad) -> Potentials:
    """geomloss's loop: the first step from zero potentials, then one averaged symmetric step per eps."""
    with torch.set_grad_enabled(grad == "unroll" and torch.is_grad_enabled()):
        if grad == "envelope":
            x, y, a, b = x.detach(), y.detach(), a.detach(), b.detach()
        terms = SymmetricTerms(x, y, a, b, cost, rho, debias, dense, detach_columns=False, eps=eps)
        zeros = Potentials(*[x.new_zeros(t.shape[:-1]) for t in ((x, y, x, y) if debias else (x, y))])
        current, _ = terms.step(schedule[0], zeros)
        for stage in schedule:
            new, _ = terms.step(stage, current, terms.hints(stage, current))
            current = current.average(new)
    return current


def _converge(x, y, a, b, cost, rho, eps, debias, dense, eps_scaling, schedule, grad, max_iter, tol) -> Potentials:
    """``OT(a, b)`` solved by :func:`otalign.solve`; each self-term by averaged symmetric steps to the same ``tol``
    (:func:`~otalign.symmetric_sinkhorn.symmetric_potential`: alternating Sinkhorn is slow on symmetric problems),
    the two as one batched problem when ``n == m``, after one averaged step per eps of ``schedule``."""
    mode = "unroll" if grad == "unroll" else "detach"

    def problem(u, v, wu, wv):
        geometry = PointCloud(u, v, cost)
        return Problem(geometry.matrix() if dense else geometry, wu, wv, eps=eps, rho_a=rho, rho_b=rho,
                       reference="product")

    plan = solve(problem(x, y, a, b), "sinkhorn", max_iter=max_iter, tol=tol, grad=mode, eps_scaling=eps_scaling)
    if not debias:
        return Potentials(plan.f, plan.g)
    with torch.set_grad_enabled(grad == "unroll" and torch.is_grad_enabled()):
        if x.shape[-2] == y.shape[-2]:
            join = torch.cat if x.dim() == 3 else torch.stack
            both = problem(join([x, y]), join([x, y]), join([a, b]), join([a, b]))
            f, converged = symmetric_potential(both, schedule, max_iter, tol)
            f_aa, g_bb = f.chunk(2) if x.dim() == 3 else f.unbind(0)
        else:
            own_x, own_y = problem(x, x, a, a), problem(y, y, b, b)
            f_aa, done_x = symmetric_potential(own_x, schedule, max_iter, tol)
            g_bb, done_y = symmetric_potential(own_y, schedule, max_iter, tol)
            converged = done_x and done_y
    if not converged:
        warnings.warn(f"sinkhorn_divergence: the self-terms did not reach tol={tol:g} in max_iter={max_iter} "
                      f"steps; raise max_iter or eps", ConvergenceWarning, stacklevel=3)
    return Potentials(plan.f, plan.g, f_aa, g_bb)


def _schedule(x: Tensor, y: Tensor, cost, eps: float, eps_scaling: float, eps_start: Optional[float]) -> list[float]:
    if eps_start is None:
        power = get_cost(cost).power
        if power is None:
            raise ValueError(f"eps_start: required for the cost {cost!r} (the default is diameter^p for the costs "
                             f"that grow like |x - y|^p: 'sqeuclidean', 'half_sqeuclidean', 'euclidean')")
        eps_start = bounding_diameter(x, y) ** power
    eps_start = check_number("eps_start", eps_start, strict=True)
    # geomloss's schedule is written in blur units: eps_k = (diameter scaling^k)^p; with p = 1 here the same list
    return annealing_schedule(1.0, eps_start, eps, eps_scaling)


def _measures(x, y, a, b, eps, rho, cost):
    """Points, masses, eps, rho and cost from any accepted input (see :func:`sinkhorn_divergence`)."""
    if isinstance(x, Problem):
        problem = x
        if problem.reference != "product":
            raise ValueError("x: the Problem's reference must be 'product' (the divergence's reference measure)")
        if problem.rho_a != problem.rho_b:
            raise ValueError(f"x: the Problem's rho_a and rho_b must be equal, got {problem.rho_a}, {problem.rho_b}")
        if any(v is not None for v in (y, a, b, eps)):
            raise TypeError("y, a, b, eps: given by the Problem; do not pass them as well")
        if not isinstance(problem.geometry, PointCloud):
            raise TypeError(f"x: a Problem over a {type(problem.geometry).__name__} has no points; the divergence "
                            f"needs them for the self-terms' costs C(x, x) and C(y, y): pass a Problem over a "
                            f"PointCloud, or the points")
        x, a, b, eps, rho = problem.geometry, problem.a, problem.b, problem.eps, problem.rho_a
    if isinstance(x, PointCloud):
        if y is not None:
            raise TypeError("y: the PointCloud already holds both point clouds")
        x, y, cost = x.x, x.y, x.cost_function
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x, y: expected point tensors, a PointCloud or a Problem over one, got "
                        f"{type(x).__name__} and {type(y).__name__}")
    if x.dim() not in (2, 3) or y.dim() != x.dim() or x.shape[-1] != y.shape[-1] or x.shape[:-2] != y.shape[:-2]:
        raise ValueError(f"x, y: expected (n, d), (m, d) or (B, n, d), (B, m, d), got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    if eps is None:
        raise TypeError("eps: required (the entropic strength, in cost units)")
    eps = check_number("eps", eps, strict=True)
    rho = math.inf if rho is None or is_inf(rho) else check_number("rho", rho, strict=True)
    a = _masses("a", a, x)
    b = _masses("b", b, y)
    if is_inf(rho) and bool(((a.sum(-1) - b.sum(-1)).abs() > 1e-5 * a.sum(-1)).any()):
        raise ValueError("a, b: a balanced divergence (rho = inf) needs equal total masses; set rho (reach) to "
                         "compare measures of different masses")
    return x, y, a, b, eps, rho, cost


def _masses(name: str, mass: Optional[Tensor], points: Tensor) -> Tensor:
    shape = points.shape[:-1]
    if mass is None:
        return torch.full(shape, 1.0 / shape[-1], dtype=points.dtype, device=points.device)
    if not isinstance(mass, Tensor) or tuple(mass.shape) != tuple(shape):
        got = tuple(mass.shape) if isinstance(mass, Tensor) else type(mass).__name__
        raise ValueError(f"{name}: expected masses of shape {tuple(shape)}, got {got}")
    if bool((mass < 0).any()):
        raise ValueError(f"{name}: masses must be non-negative")
    return mass.to(points.dtype)


__all__ = ["sinkhorn_divergence", "divergence_value", "METHODS", "GRADS"]
