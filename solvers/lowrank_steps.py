"""The pieces of low-rank Sinkhorn (:mod:`otalign.solvers.lowrank`): initial factors, the mirror-descent step and
the log-domain Dykstra projection onto the low-rank couplings.

Shapes: ``Q (..., n, r)``, ``R (..., m, r)``, ``g (..., r)``, masses ``a (..., n)``, ``b (..., m)``; every
function works on a leading batch dimension. State is kept in logs (``log Q``, ``log R``, ``log g``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from otalign.problem import Problem, safe_log

INITIALIZERS = ("random", "rank2")
RESCALES = ("linear", "square", None)


def initial_factors(problem: Problem, rank: int, method: str, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Feasible-ish starting factors ``(Q, R, g)``.

    ``"random"``: entries ``|N(0, 1)| + 1`` (a CPU generator seeded with ``seed`` for each problem of a batch, so
    results depend neither on the device nor on batching; drawn for the rows of positive mass only, so a zero
    mass gives the factors of the problem without its row, and a zero row), rows
    of ``Q`` / ``R`` rescaled to ``a`` / ``b``, ``g`` to the total mass. ``"rank2"``: the deterministic rank-2
    coupling of Scetbon, Cuturi & Peyre (2021), ``Q = lam a1 g1^T + (1 - lam) a2 g2^T`` with ``a1``, ``g1``
    proportional to ``1, 2, 3, ...``, ``g`` uniform and ``lam`` half the smallest positive mass (divided by the total
    mass), which satisfies all constraints exactly (POT's ``init="deterministic"``).
    """
    a, b = problem.a, problem.b
    mass = a.sum(-1, keepdim=True)
    like = dict(dtype=problem.dtype, device=problem.device)
    if method == "random":
        draws = []
        flat_a, flat_b = a.detach().reshape(-1, problem.n).cpu(), b.detach().reshape(-1, problem.m).cpu()
        for rows, cols in zip(flat_a > 0, flat_b > 0):  # the same draws for every problem of a batch
            gen = torch.Generator().manual_seed(seed)
            g0, q0, r0 = (torch.randn(shape, generator=gen, dtype=problem.dtype).abs_().add_(1)
                          for shape in ((rank,), (int(rows.sum()), rank), (int(cols.sum()), rank)))
            draws.append([g0, _scatter_rows(q0, rows), _scatter_rows(r0, cols)])
        g, Q, R = (torch.stack(parts).reshape(problem.batch_shape + parts[0].shape).to(problem.device)
                   for parts in zip(*draws))
        g = g * mass / g.sum(-1, keepdim=True)
        return Q * _ratio(a, Q.sum(-1)).unsqueeze(-1), R * _ratio(b, R.sum(-1)).unsqueeze(-1), g
    g = (mass / rank).expand(problem.batch_shape + (rank,))
    lam = torch.minimum(torch.minimum(_min_positive(a), _min_positive(b)), mass.squeeze(-1) / rank) / 2
    lam = (lam / mass.squeeze(-1)).unsqueeze(-1)  # (..., 1), in (0, 1/2]
    g1 = _ramp(g)
    g2 = (g - lam * g1) / (1 - lam)

    def side(mass_vector: Tensor) -> Tensor:
        v1 = _ramp(mass_vector)
        v2 = (mass_vector - lam * v1) / (1 - lam)
        outer = lam.unsqueeze(-1) * v1.unsqueeze(-1) * g1.unsqueeze(-2)
        return (outer + (1 - lam).unsqueeze(-1) * v2.unsqueeze(-1) * g2.unsqueeze(-2)) / mass.unsqueeze(-1)

    return side(a).to(**like), side(b).to(**like), g.contiguous().to(**like)


def _ratio(mass: Tensor, total: Tensor) -> Tensor:
    """``mass / total``, 0 where ``mass`` is 0 (its row of draws is 0 too)."""
    return torch.where(mass > 0, mass / total.masked_fill(total == 0, 1.0), torch.zeros_like(mass))


def _scatter_rows(x: Tensor, keep: Tensor) -> Tensor:
    """``x (k, r)`` placed at the ``k`` rows where ``keep (n,)`` is True of an ``(n, r)`` array of zeros."""
    out = x.new_zeros((keep.shape[0], x.shape[-1]))
    out[keep] = x
    return out


def _ramp(mass: Tensor) -> Tensor:
    """``1, 2, 3, ...`` on the positive entries of ``mass`` (counting those only), 0 elsewhere, scaled to
    ``mass``'s total."""
    positive = mass > 0
    ramp = positive.cumsum(-1).to(mass.dtype) * positive
    return ramp * (mass.sum(-1, keepdim=True) / ramp.sum(-1, keepdim=True))


def _min_positive(mass: Tensor) -> Tensor:
    return torch.where(mass > 0, mass, torch.inf).amin(-1)


def mirror_kernels(
    log_q: Tensor, log_r: Tensor, log_g: Tensor, CR: Tensor, CtQ: Tensor, epsilon: float, gamma: float,
    rescale: Optional[str], rows: Tensor, cols: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One mirror-descent (KL proximal) step on the objective, before projection.

    The gradients of ``F = <C, Q diag(1/g) R^T> + epsilon (sum Q log Q + sum R log R + sum g log g)`` are
    ``CR / g + epsilon (log Q + 1)``, ``C^T Q / g + epsilon (log R + 1)`` and ``-diag(Q^T C R) / g^2 + epsilon
    (log g + 1)``; the constants vanish in the projection. The step is ``log K = log X - step * grad_X`` with
    ``step = gamma / G`` (``rescale="linear"``), ``gamma / G^2`` (``"square"``, Scetbon & Cuturi 2022) or
    ``gamma`` (``None``), with ``G = max(|grad_Q|_inf, |grad_R|_inf, |grad_g|_inf)`` per problem (rows / columns of
    zero mass, flagged False in ``rows`` / ``cols``, are left out). The ``"linear"`` step is capped at
    ``1 / (2 epsilon)``: the step is ``log K = (1 - step epsilon) log X - step grad_lin``, and a factor
    ``1 - step epsilon`` below 1/2 overshoots the entropic part (the objective then oscillates).
    Returns ``(log K_Q, log K_R, log K_g, step)``.
    """
    inv_g = (-log_g).exp()
    grad_q = CR * inv_g.unsqueeze(-2) + epsilon * _finite(log_q)
    grad_r = CtQ * inv_g.unsqueeze(-2) + epsilon * _finite(log_r)
    omega = (log_q.exp() * CR).sum(-2)
    grad_g = -omega * inv_g.square() + epsilon * log_g
    if rescale:  # differentiated too: the step is a function of the inputs of the unrolled map
        norm = torch.maximum(torch.maximum(_sup(grad_q, rows), _sup(grad_r, cols)), grad_g.abs().amax(-1))
        norm = norm.clamp_min(torch.finfo(norm.dtype).tiny)
        step = gamma / (norm if rescale == "linear" else norm.square())
        if rescale == "linear" and epsilon > 0:
            step = step.clamp_max(0.5 / epsilon)
    else:
        step = torch.full(log_g.shape[:-1], gamma, dtype=log_g.dtype, device=log_g.device)
    s = step.unsqueeze(-1)
    log_kq = _keep_zero_rows(log_q - s.unsqueeze(-1) * grad_q, rows)
    log_kr = _keep_zero_rows(log_r - s.unsqueeze(-1) * grad_r, cols)
    return log_kq, log_kr, log_g - s * grad_g, step


def _keep_zero_rows(log_k: Tensor, keep: Tensor) -> Tensor:
    """``log_k`` with the rows of zero mass (``keep`` False) at ``-inf``: a factor's row of a zero mass is 0 and
    stays 0 (its gradient step would be ``-inf + inf``)."""
    if bool(keep.all()):
        return log_k
    return log_k.masked_fill(~keep.unsqueeze(-1), -math.inf)


def _finite(log_x: Tensor) -> Tensor:
    """``log_x`` with ``-inf`` (the zero rows of a factor) read as 0, so that ``epsilon * log_x`` is finite."""
    return log_x.masked_fill(log_x == -math.inf, 0.0)


def _sup(grad: Tensor, keep: Tensor) -> Tensor:
    return grad.abs().masked_fill(~keep.unsqueeze(-1), 0.0).amax((-1, -2))


def dykstra(
    log_kq: Tensor, log_kr: Tensor, log_kg: Tensor, a: Tensor, b: Tensor, alpha: float, tol: float, max_iter: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """KL projection of the kernels ``(K_Q, K_R, K_g)`` onto ``{Q 1 = a, R 1 = b, Q^T 1 = R^T 1 = g >= alpha}``.

    Dykstra's algorithm (Scetbon, Cuturi & Peyre 2021, Algorithm 2) written in the log domain: the scalings
    ``Q = diag(u1) K_Q diag(v1)``, ``R = diag(u2) K_R diag(v2)`` and the correction terms are kept as logs and every
    matrix-vector product is a log-sum-exp over an ``(n, r)`` or ``(m, r)`` array (O((n + m) r) per iteration),
    evaluated as a stabilised product (:class:`_StableKernel`). Stops
    once ``|Q 1 - a|_1 + |R 1 - b|_1 <= tol`` (the column constraints hold exactly after each iteration) or after
    ``max_iter`` iterations; batch elements that meet the tolerance are frozen, so a batch gives what a loop would.

    Returns ``(log Q, log R, log g, error (...,), iterations)``.
    """
    log_a, log_b = safe_log(a), safe_log(b)
    log_alpha = math.log(alpha)
    side_q, side_r = _StableKernel(log_kq), _StableKernel(log_kr)
    zeros = torch.zeros_like(log_kg)
    state = dict(u1=None, u2=None, v1=zeros, v2=zeros, q1=zeros, q2=zeros, q31=zeros, q32=zeros, g=log_kg)
    error = torch.full(log_kg.shape[:-1], math.inf, dtype=log_kg.dtype, device=log_kg.device)
    active: Optional[Tensor] = None
    done = 0
    for it in range(max_iter + 1):
        s1, s2 = side_q.rows(state["v1"]), side_r.rows(state["v2"])
        if it > 0:
            with torch.no_grad():
                err = (torch.exp(state["u1"] + s1) - a).abs().sum(-1) + (torch.exp(state["u2"] + s2) - b).abs().sum(-1)
                error = err if active is None else torch.where(active, err, error)
                still = err > tol
                active = still if active is None else active & still
            if it == max_iter or not bool(active.any()):
                break
        new = _dykstra_step(state, side_q, side_r, _log_ratio(log_a, s1), _log_ratio(log_b, s2), log_alpha)
        if active is None or bool(active.all()):
            state = new
        else:
            state = {k: torch.where(active.unsqueeze(-1), new[k], state[k]) for k in state}
        done += 1
    log_q = state["u1"].unsqueeze(-1) + log_kq + state["v1"].unsqueeze(-2)
    log_r = state["u2"].unsqueeze(-1) + log_kr + state["v2"].unsqueeze(-2)
    return log_q, log_r, state["g"], error, done


def _log_ratio(log_mass: Tensor, log_sum: Tensor) -> Tensor:
    """``log_mass - log_sum``, ``-inf`` at a zero mass (whose row sum is ``log 0`` too: ``-inf - -inf``)."""
    return torch.where(log_mass == -math.inf, log_mass, log_mass - log_sum)


class _StableKernel:
    """Log-sum-exps against a fixed log-kernel ``L (..., n, r)`` as matrix-vector products.

    ``L = rho_i + log K_ik`` with ``rho_i = max_k L_ik``, so ``K`` lies in [0, 1] with a 1 in every row and is
    exponentiated once per projection; each log-sum-exp then shifts its vector by its maximum, multiplies by ``K``
    and takes a log (O(n r) multiply-adds instead of O(n r) exponentials). Entries where that underflows to
    ``log 0`` (a row or column whose mass is more than the dtype's range below the largest) are recomputed with
    an exact log-sum-exp, so the result always equals ``logsumexp(L + ...)``.
    """

    def __init__(self, log_kernel: Tensor):
        self.log_kernel = log_kernel
        rho = log_kernel.amax(-1)
        self.empty = rho == -math.inf  # a zero row (zero mass): a row of zeros in K, log 0 in every row sum
        self.rho = rho.masked_fill(self.empty, 0.0)
        self.kernel = (log_kernel - self.rho.unsqueeze(-1)).exp()
        if bool(self.empty.any()):  # what the logs and exact sums read there: finite, masked afterwards
            self.log_kernel = log_kernel.masked_fill(self.empty.unsqueeze(-1), 0.0)

    def rows(self, v: Tensor) -> Tensor:
        """``log sum_k exp(L_ik + v_k)``, ``(..., n)``; ``-inf`` at an empty row (with a zero gradient)."""
        shift = v.amax(-1, keepdim=True)
        sums = (self.kernel @ (v - shift).exp().unsqueeze(-1)).squeeze(-1)
        out = sums.masked_fill(self.empty, 1.0).log() + (self.rho + shift)
        out = self._exact(out, lambda: torch.logsumexp(self.log_kernel + v.unsqueeze(-2), dim=-1))
        return out.masked_fill(self.empty, -math.inf)

    def cols(self, u: Tensor) -> Tensor:
        """``log sum_i exp(L_ik + u_i)``, ``(..., r)``."""
        scaled = u + self.rho
        shift = scaled.amax(-1, keepdim=True)
        out = ((scaled - shift).exp().unsqueeze(-2) @ self.kernel).squeeze(-2).log() + shift
        return self._exact(out, lambda: torch.logsumexp(self.log_kernel + u.unsqueeze(-1), dim=-2))

    @staticmethod
    def _exact(out: Tensor, exact) -> Tensor:
        bad = ~torch.isfinite(out)
        return torch.where(bad, exact(), out) if bool(bad.any()) else out


def _dykstra_step(state: dict, side_q: "_StableKernel", side_r: "_StableKernel", u1: Tensor, u2: Tensor,
                  log_alpha: float) -> dict:
    """One Dykstra sweep: the row constraints (scalings ``u``) and ``g >= alpha``, then the shared column sums."""
    g = state["g"] + state["q31"]
    g_clamped = g.clamp_min(log_alpha)
    q31 = g - g_clamped
    t1, t2 = side_q.cols(u1), side_r.cols(u2)  # log (K_Q^T u1), log (K_R^T u2), (..., r)
    g_new = (g_clamped + state["q32"] + state["v1"] + state["q1"] + t1 + state["v2"] + state["q2"] + t2) / 3
    v1, v2 = g_new - t1, g_new - t2
    return dict(
        u1=u1, u2=u2, v1=v1, v2=v2,
        q1=state["v1"] + state["q1"] - v1, q2=state["v2"] + state["q2"] - v2,
        q31=q31, q32=g_clamped + state["q32"] - g_new, g=g_new,
    )
