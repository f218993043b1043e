"""The symmetric, eps-annealed Sinkhorn loop of a Sinkhorn divergence (docs/divergence.md).

A divergence between ``(a, x)`` and ``(b, y)`` needs up to four potentials: ``f_ba`` on ``x`` and ``g_ab`` on ``y``
for ``OT(a, b)``, and the symmetric potentials ``f_aa`` on ``x`` and ``g_bb`` on ``y`` for the self-terms
``OT(a, a)`` and ``OT(b, b)``. Every one of them is updated by the same operation, a soft-min of the cost against
another potential plus the log-masses of the other side,

    T(h)_i = -lambda eps LSE_j[ log w_j + (h_j - C(u_i, v_j)) / eps ],     lambda = rho / (rho + eps),

with ``(u, v, w, h)`` = ``(x, y, b, g_ab)`` for ``f_ba``, ``(y, x, a, f_ba)`` for ``g_ab``, ``(x, x, a, f_aa)`` for
``f_aa`` and ``(y, y, b, g_bb)`` for ``g_bb``. This is :func:`otalign.halfstep.row_step` of the problem with rows
``u``, columns ``v`` and column masses ``w`` (product reference). A *symmetric* step updates all four at once from
the previous values (a Jacobi step, not alternating) and averages old and new: ``h <- (h + T(h')) / 2``.

When ``x`` and ``y`` have the same number of points the four updates are one batched soft-min over a stacked
point cloud (rows ``[x, y, x, y]``, columns ``[y, x, x, y]``): one pass of the soft-min per step for all terms.
Otherwise ``OT(a, b)`` takes two half-steps and each self-term one.

The eps schedule (:func:`annealing_schedule`) starts at ``diameter^p`` and divides eps by ``scaling^-p`` at each
step down to ``blur^p``, one symmetric step per value (the schedule of geomloss's ``SamplesLoss("sinkhorn")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .costs import get_cost
from .geometry import DenseCost, PointCloud
from .halfstep import log_row_marginal, row_step
from .problem import Problem, optimal_marginal
from .softmin import exp_floor
from .checks import trusted


def bounding_diameter(x: Tensor, y: Tensor) -> float:
    """The diagonal of the bounding box of all points of ``x (..., n, d)`` and ``y (..., m, d)`` (every batch
    together): an upper bound of every distance ``|x_i - y_j|``."""
    d = x.shape[-1]
    with torch.no_grad():
        points = torch.cat((x.detach().reshape(-1, d), y.detach().reshape(-1, d)))
        return float((points.amax(0) - points.amin(0)).norm())


def annealing_schedule(p: float, diameter: float, blur: float, scaling: float) -> list[float]:
    """eps values of the annealed loop: ``diameter^p``, then ``exp(p log diameter + k p log scaling)`` for
    ``k = 0, 1, ...`` while above ``blur^p`` (``diameter^p`` thus appears twice), and finally ``blur^p``."""
    start, stop, step = p * math.log(diameter), p * math.log(blur), p * math.log(scaling)
    exponents = np.arange(start, stop, step)  # float64, as many values as ceil((stop - start) / step)
    return [diameter ** p] + [float(np.exp(e)) for e in exponents] + [blur ** p]


#: Factor by which the backward of the differentiated last step is scaled up (and scaled back on the points).
#: Its soft-min backward multiplies the kernel's clamped smallest weights (``e^-80`` in float32) by the incoming
#: gradient (of order ``eps / n``), which lands in the subnormal range; every later product (the cost's backward, a
#: matrix product) then runs on subnormals, 100x slower on CPUs. Scaled by 2^40 (exact in binary), they stay normal.
GRAD_SCALE = 2.0 ** 40


@dataclass
class Potentials:
    """The potentials of a divergence: ``f_ba (..., n)`` and ``g_ab (..., m)`` of ``OT(a, b)``, ``f_aa (..., n)``
    and ``g_bb (..., m)`` of the self-terms (``None`` when the self-terms are not computed)."""

    f_ba: Tensor
    g_ab: Tensor
    f_aa: Optional[Tensor] = None
    g_bb: Optional[Tensor] = None

    def as_list(self) -> list[Tensor]:
        return [t for t in (self.f_ba, self.g_ab, self.f_aa, self.g_bb) if t is not None]

    def average(self, other: "Potentials") -> "Potentials":
        mixed = [(s + o) / 2 for s, o in zip(self.as_list(), other.as_list())]
        return Potentials(*mixed)


class SymmetricTerms:
    """The OT problems of one divergence as soft-min half-steps (module docstring).

    Args:
        x, y: points ``(n, d)``, ``(m, d)`` or batched ``(B, n, d)``, ``(B, m, d)``.
        a, b: masses ``(..., n)``, ``(..., m)``.
        cost: a cost name of :data:`otalign.costs.COSTS` or a callable (symmetric: ``C(u, v) = C(v, u)^T``).
        rho: marginal penalty (``inf``: balanced), the same on every side.
        debias: also the self-terms.
        dense: materialise the cost matrices (fast for moderate sizes) instead of a :class:`PointCloud` that
            recomputes cost blocks (O((n + m) d) memory).
        detach_columns: the columns' points and masses carry no gradient (the last, differentiated step of the
            envelope gradient: each point then receives its gradient once, through its own rows).
        eps: the problem's eps (the final one; steps may use any other).
    """

    def __init__(self, x: Tensor, y: Tensor, a: Tensor, b: Tensor, cost, rho: float, debias: bool, dense: bool,
                 detach_columns: bool, eps: float):
        self.debias, self.n = debias, x.shape[-2]
        #: the closed-form envelope backward (:class:`_EnvelopeStep`) for squared-Euclidean point clouds
        scale = get_cost(cost).squared_distance_scale  # C = scale |x - y|^2: the envelope backward's closed form
        self.closed_form = detach_columns and not dense and scale is not None
        self.factor = 2.0 * scale if scale is not None else 1.0
        self.scale = GRAD_SCALE if detach_columns and not self.closed_form else 1.0
        if self.scale != 1.0:  # the backward of the last step runs GRAD_SCALE times larger (see GRAD_SCALE)
            x, y = _scale_grad(x, 1.0 / GRAD_SCALE), _scale_grad(y, 1.0 / GRAD_SCALE)
        self.stacked = x.shape[-2] == y.shape[-2]
        col = (lambda t: t.detach()) if detach_columns else (lambda t: t)
        if self.stacked:
            rows = [x, y, x, y] if debias else [x, y]
            cols = [col(y), col(x), col(x), col(y)] if debias else [col(y), col(x)]
            masses = [col(b), col(a), col(a), col(b)] if debias else [col(b), col(a)]
            stack = lambda ts: _stack(ts, x.dim() == 3)
            self.problems = [_problem(stack(rows), stack(cols), stack(masses), cost, rho, dense, eps)]
        else:
            pairs = [(x, col(y), col(b)), (y, col(x), col(a))]
            if debias:
                pairs += [(x, col(x), col(a)), (y, col(y), col(b))]
            self.problems = [_problem(u, v, w, cost, rho, dense, eps) for u, v, w in pairs]
        self.batched = x.dim() == 3

    def step(self, eps: float, current: Potentials, hints: Optional[list[Tensor]] = None
             ) -> tuple[Potentials, list[Tensor]]:
        """``T`` applied to every potential at ``eps``, from ``current`` (a Jacobi step, no averaging). Returns
        the new potentials and the raw log-sum-exps (hints for the next step)."""
        h = [current.g_ab, current.f_ba] + ([current.f_aa, current.g_bb] if self.debias else [])
        hints = hints or [None] * len(self.problems)
        if self.stacked:
            out, lse = self._update(self.problems[0].with_eps(eps), _stack(h, self.batched), hints[0])
            k = len(h)
            parts = list(out.reshape(k, -1, *out.shape[1:]).unbind(0)) if self.batched else list(out.unbind(0))
            return Potentials(*parts), [lse]
        results = [self._update(problem.with_eps(eps), hj, hint) for problem, hj, hint in zip(self.problems, h, hints)]
        return Potentials(*[r[0] for r in results]), [r[1] for r in results]

    def _update(self, problem: Problem, h: Tensor, hint: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """``T(h)`` of one (possibly stacked) problem and its log-sum-exp."""
        if self.closed_form:
            rows = problem.geometry.x
            detached = problem.with_tensors([rows.detach(), problem.geometry.y], problem.a, problem.b)
            with torch.no_grad():
                out, lse = row_step(detached, h.detach(), None, hint)
            return _EnvelopeStep.apply(rows, out, lse, detached, h.detach(), self.factor), lse
        out, lse = row_step(problem, h, None, hint)
        return _scale_grad(out, self.scale), lse

    def hints(self, eps: float, current: Potentials) -> list[Tensor]:
        """Guesses of the next step's log-sum-exps from the current potentials (``lse = -T(h) / (lambda eps)``)."""
        lam = self.problems[0].with_eps(eps).lambda_a
        values = [current.f_ba, current.g_ab] + ([current.f_aa, current.g_bb] if self.debias else [])
        scaled = [v.detach() / (-lam * eps) for v in values]
        return [_stack(scaled, self.batched)] if self.stacked else scaled


def symmetric_potential(problem: Problem, schedule: list[float], max_iter: int, tol: float) -> tuple[Tensor, bool]:
    """The potential ``f`` of a symmetric problem (rows and columns the same points and masses) by averaged steps
    ``f <- (f + T(f)) / 2``: one per eps of ``schedule``, then at ``problem.eps`` until the marginal residual
    ``|P 1 - a|_1`` (``a exp(-f / rho)`` when relaxed) is at most ``tol`` or ``max_iter`` steps. Returns
    ``(f, converged)``.

    Alternating Sinkhorn converges slowly on such problems when the points form clusters (the linearised update has
    eigenvalues near -1 there, which averaging sends to 0)."""
    f = problem.a.new_zeros(problem.batch_shape + (problem.n,))
    for eps in schedule:
        f = (f + row_step(problem.with_eps(eps), f)[0]) / 2
    hint = None
    for _ in range(max_iter):
        new, hint = row_step(problem, f, None, hint)
        with torch.no_grad():
            marginal = log_row_marginal(problem, f, hint).exp()
            target = optimal_marginal(f, problem.a, problem.rho_a)
            converged = bool(((marginal - target).abs().sum(-1) <= tol).all())
        if converged:
            return f, True
        f = (f + new) / 2
    return f, False


class _EnvelopeStep(torch.autograd.Function):
    """``T(h)`` (computed already: ``out``) as a function of the row points alone, for ``C = c |u - v|^2``
    (``factor = 2 c``). Its backward is the closed form ``dT_i / du_i = lambda factor (u_i - sum_j s_ij v_j)``,
    ``s_ij`` the soft-min weights of row ``i``: one blocked pass (logits, exp, product with ``v``) instead of
    autograd through every cost block."""

    @staticmethod
    def forward(ctx, rows: Tensor, out: Tensor, lse: Tensor, problem: Problem, h: Tensor, factor: float) -> Tensor:
        ctx.save_for_backward(rows, lse, h)
        ctx.problem, ctx.factor = problem, factor
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        rows, lse, h = ctx.saved_tensors
        problem: Problem = ctx.problem
        geometry = problem.geometry
        tensors = geometry.tensors()
        columns = tensors[1]
        h_scaled = (h + problem.eps * problem.log_b) / problem.eps  # the product reference's column term
        floor = exp_floor(rows.dtype)
        mean = torch.empty_like(rows)
        with torch.no_grad():
            blocks = geometry.logit_blocks(tensors, h_scaled, lse, 1, problem.eps)
            for start, stop in geometry.row_blocks():
                weights = blocks(start, stop).clamp_min_(floor).exp_()  # s_ij, rows sum to 1
                mean[..., start:stop, :] = weights @ columns
        coefficient = (problem.lambda_a * ctx.factor) * grad_out
        return coefficient.unsqueeze(-1) * (rows - mean), None, None, None, None, None


def _scale_grad(tensor: Tensor, factor: float) -> Tensor:
    """``tensor`` itself, whose incoming gradient is multiplied by ``factor`` (a power of two: exact)."""
    if factor == 1.0 or not tensor.requires_grad:
        return tensor
    return _ScaleGrad.apply(tensor, factor)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.factor, None


def _stack(tensors: list[Tensor], batched: bool) -> Tensor:
    """Stack along a new leading axis; batched tensors ``(B, ...)`` are concatenated instead (``(k B, ...)``)."""
    return torch.cat(tensors) if batched else torch.stack(tensors)


def _problem(u: Tensor, v: Tensor, w: Tensor, cost, rho: float, dense: bool, eps: float) -> Problem:
    """The problem whose :func:`~otalign.halfstep.row_step` is ``T`` for rows ``u``, columns ``v`` and column masses
    ``w`` (row masses are not used by the half-step under the product reference: ``w`` stands in)."""
    geometry = PointCloud(u, v, cost)
    if dense:
        geometry = DenseCost(geometry.matrix())
    a = (w.detach().sum(-1, keepdim=True) / u.shape[-2]).expand(u.shape[:-1])
    with trusted():
        return Problem(geometry, a, w, eps=eps, rho_a=rho, rho_b=rho, reference="product")


__all__ = ["Potentials", "SymmetricTerms", "annealing_schedule", "bounding_diameter", "symmetric_potential"]
