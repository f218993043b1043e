"""The low-rank projection by Newton's method on its ``2 r`` dual variables (:mod:`otalign.solvers.lowrank`'s
projection when solving to ``tol > 0``).

The KL projection of ``(exp L_Q, exp L_R, K_g)`` onto ``{Q 1 = a, R 1 = b, Q^T 1 = R^T 1 = g >= alpha}`` (the problem
:func:`~otalign.solvers.lowrank_dykstra.dykstra` solves) has the solution ``Q = diag(e^f) exp(L_Q) diag(e^v_Q)``,
``R = diag(e^h) exp(L_R) diag(e^v_R)``, ``g = max(alpha, K_g e^(-v_Q - v_R))``, and once the row scalings are
eliminated (``f = log a - lse(L_Q + v_Q)``: the rows hold exactly) the column scalings maximise the concave
function of ``2 r`` variables

    Phi(v_Q, v_R) = - sum_i a_i lse_k(L_Q,ik + v_Q,k) - sum_j b_j lse_k(L_R,jk + v_R,k) - sum_k psi(s_k),
    s = log K_g - v_Q - v_R,  psi(s) = e^s (s >= log alpha), alpha (s - log alpha + 1) (below),

whose gradient is ``(g - Q^T 1, g - R^T 1)`` and whose Hessian is ``-[[A_Q + D, D], [D, A_R + D]]`` with
``A_Q = diag(Q^T 1) - Q^T diag(1/a) Q`` and ``D = diag(g)`` where the bound is not active (0 where it is).

Dykstra's iteration is block coordinate ascent on the same function; its rate degrades as the factors approach
hard assignments (the default ``epsilon = 0`` drives them there: entries e^-400 below their row's largest), where
moving mass between components runs through a few rows. Newton's method is not slowed by that: each iteration
costs two log-sum-exps over ``(n, r)`` and ``(m, r)``, two ``r x r`` Gram products (``O((n + m) r^2)``) and a
``2 r x 2 r`` solve, with a backtracking line search on ``Phi`` (ascent is guaranteed). It runs in float64 whatever
the input dtype (the line search compares values of ``Phi`` to ~1e-16 relative); the result is cast back. The
direction ``(1, -1)`` leaves ``Phi`` unchanged (a gauge) and is removed by a small ridge. Stops when
``|Q^T 1 - g|_1 + |R^T 1 - g|_1 <= tol`` (the row constraints hold by construction).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

from otalign.problem import safe_log

from .lowrank_dykstra import Projection


#: The largest change of a log column scaling in one Newton iteration (a trust region; steps near the solution are
#: far smaller, so the quadratic convergence there is unchanged).
MAX_MOVE = 5.0


class _Point(NamedTuple):
    """``Phi``, its gradient ``(..., 2r)``, the factors' logs and ``g``'s log at one ``v = (v_Q, v_R)``."""

    value: Tensor
    grad: Tensor
    log_q: Tensor
    log_r: Tensor
    log_g: Tensor
    free: Tensor  # (..., r): the bound g >= alpha is not active


def newton_projection(
    log_kq: Tensor, log_kr: Tensor, log_kg: Tensor, a: Tensor, b: Tensor, alpha: float, tol: Union[float, Tensor],
    max_iter: int, start: Optional[tuple[Tensor, Tensor]] = None,
) -> Projection:
    """The KL projection onto the low-rank couplings by damped Newton on ``(v_Q, v_R)`` (see the module docstring).

    ``start``: column scalings to start from (``None``: zeros). At most ``max_iter`` Newton iterations; a batch
    element within its ``tol`` is frozen, so a batch gives what a loop would. Returns a
    :class:`~otalign.solvers.lowrank_dykstra.Projection` whose ``error`` is ``|Q^T 1 - g|_1 + |R^T 1 - g|_1``.
    """
    dtype = log_kq.dtype
    if dtype != torch.float64:  # Phi's line search compares values to ~1e-16 relative: float32 cannot
        log_kq, log_kr, log_kg, a, b = (x.double() for x in (log_kq, log_kr, log_kg, a, b))
        start = None if start is None else tuple(x.double() for x in start)
    sides = [_finite(log_kq, a), _finite(log_kr, b)]
    masses = (a, b)
    log_masses = (safe_log(a), safe_log(b))
    log_alpha = math.log(alpha)
    r = log_kg.shape[-1]
    v = torch.zeros(log_kg.shape[:-1] + (2 * r,), dtype=log_kg.dtype, device=log_kg.device)
    if start is not None:
        v = torch.cat(start, dim=-1)
    point = _evaluate(v, sides, masses, log_masses, log_kg, log_alpha)
    done = 0
    error = point.grad.abs().sum(-1)
    active = error > tol
    while done < max_iter and bool(active.any()):
        step = _direction(point, masses) * active.unsqueeze(-1)  # elements within their tol are frozen
        # at most MAX_MOVE per scaling: where every bound g >= alpha is active, Phi is linear along each side's
        # constant direction (the Hessian's null space) up to where a bound frees, and the ridged Newton step along
        # it is of order 1 / ridge; halving it back from there could take more than the line search's 30 tries
        t = (MAX_MOVE / step.abs().amax(-1)).nan_to_num(1.0).clamp_(max=1.0)
        slope = (point.grad * step).sum(-1)
        for _ in range(30):  # backtracking: ascent on Phi (Armijo), or, where Phi's rounding hides the ascent
            # near the maximum, a smaller gradient
            trial = _evaluate(v + t.unsqueeze(-1) * step, sides, masses, log_masses, log_kg, log_alpha)
            ok = (trial.value >= point.value + 1e-4 * t * slope) | (trial.grad.abs().sum(-1) < error)
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t / 2)
        else:  # no ascent left at this precision (the dtype's floor is above tol): stop here
            break
        v = v + t.unsqueeze(-1) * step
        point = _evaluate(v, sides, masses, log_masses, log_kg, log_alpha)
        error = point.grad.abs().sum(-1)
        active = active & (error > tol)
        done += 1
    out = (point.log_q, point.log_r, point.log_g, error.detach(), v[..., :r], v[..., r:])
    log_q, log_r, log_g, error, v_q, v_r = (x.to(dtype) for x in out)
    return Projection(log_q, log_r, log_g, error, done, (v_q, v_r))


def _finite(log_kernel: Tensor, mass: Tensor) -> Tensor:
    """The log-kernel with its zero-mass rows read as 0 (finite log-sum-exps; their weight is 0)."""
    empty = mass == 0
    return log_kernel.masked_fill(empty.unsqueeze(-1), 0.0) if bool(empty.any()) else log_kernel


def _evaluate(v: Tensor, sides: list[Tensor], masses: tuple[Tensor, Tensor], log_masses: tuple[Tensor, Tensor],
              log_kg: Tensor, log_alpha: float) -> _Point:
    r = log_kg.shape[-1]
    scalings = (v[..., :r], v[..., r:])
    value = torch.zeros_like(v[..., 0])
    logs, sums = [], []
    for kernel, mass, log_mass, scaling in zip(sides, masses, log_masses, scalings):
        z = kernel + scaling.unsqueeze(-2)
        lse = torch.logsumexp(z, dim=-1)
        value = value - (mass * lse).sum(-1)
        log_factor = log_mass.unsqueeze(-1) + z - lse.unsqueeze(-1)  # -inf on a zero row
        logs.append(log_factor)
        sums.append(log_factor.exp().sum(-2))
    s = log_kg - scalings[0] - scalings[1]
    free = s >= log_alpha
    log_g = torch.where(free, s, torch.full_like(s, log_alpha))
    g = log_g.exp()
    value = value - torch.where(free, g, g * (s - log_alpha + 1)).sum(-1)
    grad = torch.cat((g - sums[0], g - sums[1]), dim=-1)
    return _Point(value, grad, logs[0], logs[1], log_g, free)


def _direction(point: _Point, masses: tuple[Tensor, Tensor]) -> Tensor:
    """The Newton direction ``M^-1 grad`` with ``M = -Hessian`` (positive semi-definite) plus a small ridge."""
    blocks = []
    for log_factor, mass in ((point.log_q, masses[0]), (point.log_r, masses[1])):
        factor = log_factor.exp()
        rows = factor / torch.where(mass > 0, mass, torch.ones_like(mass)).unsqueeze(-1)  # softmax rows (0 if empty)
        blocks.append(torch.diag_embed(factor.sum(-2)) - factor.transpose(-1, -2) @ rows)
    d = torch.diag_embed(torch.where(point.free, point.log_g.exp(), torch.zeros_like(point.log_g)))
    top = torch.cat((blocks[0] + d, d), dim=-1)
    bottom = torch.cat((d, blocks[1] + d), dim=-1)
    matrix = torch.cat((top, bottom), dim=-2)
    scale = torch.diagonal(matrix, dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(matrix.dtype).tiny)
    ridge = 1e-10 * scale if matrix.dtype == torch.float64 else 1e-5 * scale
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    return torch.linalg.solve(matrix + ridge[..., None, None] * eye, point.grad.unsqueeze(-1)).squeeze(-1)
