"""The pieces of low-rank Sinkhorn (:mod:`otalign.solvers.lowrank`): initial factors, the gradients of the linear
term and the mirror-descent step (the projection is :mod:`otalign.solvers.lowrank_dykstra`).

Shapes: ``Q (..., n, r)``, ``R (..., m, r)``, ``g (..., r)``, masses ``a (..., n)``, ``b (..., m)``; every
function works on a leading batch dimension. State is kept in logs (``log Q``, ``log R``, ``log g``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from otalign.cost_operator import CostOperator
from otalign.problem import Problem

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
        g, Q, R = (_stack(parts).reshape(problem.batch_shape + parts[0].shape).to(problem.device)
                   for parts in zip(*draws))
        g = g * mass / g.sum(-1, keepdim=True)
        scale_q, scale_r = _ratio(a, Q.sum(-1)).unsqueeze(-1), _ratio(b, R.sum(-1)).unsqueeze(-1)
        if scale_q.requires_grad or scale_r.requires_grad:
            return Q * scale_q, R * scale_r, g
        return Q.mul_(scale_q), R.mul_(scale_r), g  # the draws are new tensors: scaled in place
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


def _stack(parts: list[Tensor]) -> Tensor:
    """``torch.stack(parts)`` (a view of a single part: no copy)."""
    return parts[0].unsqueeze(0) if len(parts) == 1 else torch.stack(parts)


def _scatter_rows(x: Tensor, keep: Tensor) -> Tensor:
    """``x (k, r)`` placed at the ``k`` rows where ``keep (n,)`` is True of an ``(n, r)`` array of zeros (``x``
    itself when every row is kept)."""
    if x.shape[0] == keep.shape[0]:
        return x
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


def linear_gradients(
    operator: CostOperator, Q: Tensor, R: Tensor, log_g: Tensor, buffers: Optional[list[Optional[Tensor]]] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of ``<C, Q diag(1/g) R^T>`` in ``Q`` and ``R``, ``C R diag(1/g) (..., n, r)`` and
    ``C^T Q diag(1/g) (..., m, r)``, and ``omega = diag(Q^T C R) (..., r)``.

    ``buffers``: no graph is recorded; ``buffers[2]``, ``buffers[3]`` (``None`` or arrays of the gradients' shapes,
    e.g. kept across steps) receive the gradients and ``Q`` may be overwritten. With a factored cost
    ``C = A B^T`` the small products ``B^T R``, ``A^T Q (..., p, r)`` carry ``1/g`` and give ``omega`` (no pass over
    an ``(n, r)`` array for either); with ``Q``, ``R`` and the buffers stored transposed
    (:func:`log_stored_transposed`) every product reads and writes contiguous arrays.
    """
    inv_g = (-log_g).exp().unsqueeze(-2)
    if buffers is not None and operator.factors is not None and stored_transposed(Q) and stored_transposed(R):
        # everything transposed, (..., r, n) contiguous: (B^T R)^T = R^T B, and the gradients C R / g come out as
        # (diag(1/g) R^T B) A^T, a product of contiguous arrays written straight into the transposed buffers
        (A, B), (At, Bt) = operator.factors, operator.transposed_factors()
        small_r, small_q = R.transpose(-1, -2) @ B, Q.transpose(-1, -2) @ A  # (..., r, p)
        omega = (small_q * small_r).sum(-1)
        inv_col = inv_g.transpose(-1, -2)
        grad_q = torch.matmul(small_r.mul_(inv_col), At, out=buffers[2].transpose(-1, -2)).transpose(-1, -2)
        grad_r = torch.matmul(small_q.mul_(inv_col), Bt, out=buffers[3].transpose(-1, -2)).transpose(-1, -2)
        return grad_q, grad_r, omega
    if buffers is not None and operator.factors is not None:
        A, B = operator.factors
        small_r, small_q = B.transpose(-1, -2) @ R, A.transpose(-1, -2) @ Q
        omega = (small_q * small_r).sum(-2)
        grad_q = torch.matmul(A, small_r.mul_(inv_g), out=buffers[2])
        grad_r = torch.matmul(B, small_q.mul_(inv_g), out=buffers[3])
        return grad_q, grad_r, omega
    if buffers is not None:
        CR, CtQ = operator.matmul(R, out=buffers[2]), operator.rmatmul(Q, out=buffers[3])
        omega = Q.mul_(CR).sum(-2)
        return CR.mul_(inv_g), CtQ.mul_(inv_g), omega
    CR, CtQ = operator.matmul(R), operator.rmatmul(Q)
    return CR * inv_g, CtQ * inv_g, (Q * CR).sum(-2)


def log_stored_transposed(x: Tensor) -> Tensor:
    """``log x`` for ``x (..., n, r)``, stored with its last two dimensions swapped (``.mT`` contiguous); no
    gradient."""
    out = x.new_empty(x.shape[:-2] + (x.shape[-1], x.shape[-2])).transpose(-1, -2)
    return torch.log(x, out=out)


def same_memory_transposed(x: Tensor) -> Tensor:
    """An ``(..., n, r)`` tensor over ``x``'s memory (``x`` contiguous, or stored transposed) in the other layout:
    stored transposed for a contiguous ``x``, contiguous for a transposed one. Its values are not ``x``'s (the
    memory is reinterpreted): for reusing the memory of an array that is not read again."""
    n, r = x.shape[-2:]
    if x.is_contiguous():
        return x.reshape(x.shape[:-2] + (r, n)).transpose(-1, -2)
    if not stored_transposed(x):
        raise ValueError("same_memory_transposed: x must be contiguous or stored transposed")
    return x.transpose(-1, -2).reshape(x.shape)


def stored_transposed(x: Tensor) -> bool:
    """Whether ``x (..., n, r)`` is stored with its last two dimensions swapped (``.mT`` contiguous, ``x`` not)."""
    return x.transpose(-1, -2).is_contiguous() and not x.is_contiguous()


def exp_contiguous(x: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``exp x``, contiguous whatever ``x``'s layout (a factor stored transposed by the solve comes back in the
    usual layout); ``out``: a contiguous tensor of ``x``'s shape to hold it (no gradient)."""
    if out is not None:
        return out.copy_(x).exp_()
    return x.exp() if x.is_contiguous() else x.contiguous().exp_()  # the copy, then exp in place: 2x faster


def mirror_kernels(
    log_q: Tensor, log_r: Tensor, log_g: Tensor, linear_q: Tensor, linear_r: Tensor, omega: Tensor, epsilon: float,
    gamma: float, rescale: Optional[str], rows: Optional[Tensor], cols: Optional[Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One mirror-descent (KL proximal) step on the objective, before projection.

    The gradients of ``F = <C, Q diag(1/g) R^T> + epsilon (sum Q log Q + sum R log R + sum g log g)`` are
    ``CR / g + epsilon (log Q + 1)``, ``C^T Q / g + epsilon (log R + 1)`` and ``-omega / g^2 + epsilon
    (log g + 1)`` with ``omega = diag(Q^T C R) (..., r)``; the constants vanish in the projection. ``linear_q =
    CR / g``, ``linear_r = C^T Q / g`` and ``omega`` come from :func:`linear_gradients`. The step is
    ``log K = log X - step * grad_X`` with
    ``step = gamma / G`` (``rescale="linear"``), ``gamma / G^2`` (``"square"``, Scetbon & Cuturi 2022) or
    ``gamma`` (``None``), with ``G = max(|grad_Q|_inf, |grad_R|_inf, |grad_g|_inf)`` per problem (rows / columns of
    zero mass, flagged False in ``rows`` / ``cols``, are left out; ``None``: every row is kept, see
    :func:`kept_rows`). The ``"linear"`` step is capped at
    ``1 / (2 epsilon)``: the step is ``log K = (1 - step epsilon) log X - step grad_lin``, and a factor
    ``1 - step epsilon`` below 1/2 overshoots the entropic part (the objective then oscillates).
    Without a graph to record, ``linear_q`` and ``linear_r`` may be overwritten (they become the log-kernels).
    Returns ``(log K_Q, log K_R, log K_g, step)``.
    """
    inputs = (log_q, log_r, log_g, linear_q, linear_r, omega)
    in_place = not (torch.is_grad_enabled() and any(x.requires_grad for x in inputs))
    grad_q, grad_r = linear_q, linear_r
    if epsilon != 0:  # the entropic term (skipped, not multiplied by 0: two passes over each factor fewer)
        grad_q = grad_q + epsilon * _finite(log_q)
        grad_r = grad_r + epsilon * _finite(log_r)
    grad_g = -omega * (-log_g).exp().square() + epsilon * log_g
    if rescale:  # differentiated too: the step is a function of the inputs of the unrolled map
        sup = _sup_in_place if in_place else _sup
        norm = torch.maximum(torch.maximum(sup(grad_q, rows), sup(grad_r, cols)), grad_g.abs().amax(-1))
        norm = norm.clamp_min(torch.finfo(norm.dtype).tiny)
        step = gamma / (norm if rescale == "linear" else norm.square())
        if rescale == "linear" and epsilon > 0:
            step = step.clamp_max(0.5 / epsilon)
    else:
        step = torch.full(log_g.shape[:-1], gamma, dtype=log_g.dtype, device=log_g.device)
    s = step.unsqueeze(-1)
    minus_s = -s.unsqueeze(-1)
    if in_place:
        log_kq = torch.addcmul(log_q, minus_s, grad_q, out=grad_q)
        log_kr = torch.addcmul(log_r, minus_s, grad_r, out=grad_r)
    else:
        log_kq, log_kr = torch.addcmul(log_q, minus_s, grad_q), torch.addcmul(log_r, minus_s, grad_r)
    return _keep_zero_rows(log_kq, rows), _keep_zero_rows(log_kr, cols), log_g - s * grad_g, step


def kept_rows(mass: Tensor) -> Optional[Tensor]:
    """The rows of positive mass, ``(..., n)`` booleans, or ``None`` when every row has a positive mass (found once
    per solve: the steps then skip the masking and its device-to-host read)."""
    keep = mass > 0
    return None if bool(keep.all()) else keep


def _keep_zero_rows(log_k: Tensor, keep: Optional[Tensor]) -> Tensor:
    """``log_k`` with the rows of zero mass (``keep`` False) at ``-inf``: a factor's row of a zero mass is 0 and
    stays 0 (its gradient step would be ``-inf + inf``)."""
    if keep is None:
        return log_k
    return log_k.masked_fill(~keep.unsqueeze(-1), -math.inf)


def _finite(log_x: Tensor) -> Tensor:
    """``log_x`` with ``-inf`` (the zero rows of a factor) read as 0, so that ``epsilon * log_x`` is finite."""
    return log_x.masked_fill(log_x == -math.inf, 0.0)


def _sup(grad: Tensor, keep: Optional[Tensor]) -> Tensor:
    """``|grad|_inf`` over the rows flagged in ``keep`` (``None``: all), ``(...,)``."""
    size = grad.abs()
    if keep is not None:
        size = size.masked_fill(~keep.unsqueeze(-1), 0.0)
    return size.amax((-1, -2))


def _sup_in_place(grad: Tensor, keep: Optional[Tensor]) -> Tensor:
    """:func:`_sup` without a graph: no ``|grad|`` array, the extremes of ``grad`` where every row is kept."""
    if keep is not None:
        return _sup(grad, keep)
    return torch.maximum(grad.amax((-1, -2)), grad.amin((-1, -2)).neg_())
