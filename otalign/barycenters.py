"""Fixed-support entropic Wasserstein barycenters (balanced and unbalanced), by iterative Bregman projections.

Given K histograms ``a_k`` on n points, a cost ``C (n, m)`` to the m support points of the barycenter, weights
``w_k`` (normalised to sum to 1) and ``eps > 0``, the barycenter ``q`` minimises::

    sum_k w_k OT_eps(a_k, q),   OT_eps(a, q) = min_{P 1 = a, P^T 1 = q} <C, P> + eps KL(P | 1)

(the entropic reference is the uniform measure ``R = 1``, POT's ``ot.bregman.barycenter`` convention). Each
coupling is ``P_k = diag(u_k) K diag(v_k)`` with ``K = exp(-C / eps)``. The method alternates two Bregman (KL)
projections: onto ``{P_k 1 = a_k}`` for every k (``u_k = a_k / K v_k``) and onto ``{P_k^T 1 = q for all k, some
q}``, whose solution is the weighted geometric mean ``q = prod_k (K^T u_k)^{w_k}``, then ``v_k = q / K^T u_k``
(Benamou, Carlier, Cuturi, Nenna, Peyre 2015).

Unbalanced (``rho`` finite, POT's ``ot.barycenter_unbalanced`` with ``reg_m = rho``): both marginal constraints of
every coupling become penalties ``rho KL(. | .)`` and the projections become proximal steps with exponent
``lam = rho / (rho + eps)``: ``u_k = (a_k / K v_k)^lam``, ``q = (sum_k w_k (K^T u_k)^(1 - lam))^(1 / (1 - lam))``,
``v_k = (q / K^T u_k)^lam`` (Chizat, Peyre, Schmitzer, Vialard 2018). ``rho = inf`` gives ``lam = 1`` and the
balanced iteration above.

Numerics: the scalings are held as logarithms. Each kernel product ``log(K exp(h))`` is a matrix product with a
per-column shift (cheap: BLAS), certified afterwards: where a sum is so small that the clamped exponentials could
matter, the product is recomputed as an exact log-sum-exp against ``-C / eps`` and the solve stays in the log domain
from then on. So any ``eps`` works (no underflow), and moderate ones run at matrix-product speed.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .measure_checks import check_points, check_weights
from .problem import safe_log, structural_zeros
from .checks import check_eps, check_number, check_positive_int, check_rho, checks_enabled


def barycenter(
    histograms: Tensor,
    cost: Tensor,
    eps: float = 0.1,
    weights: Optional[Tensor] = None,
    rho: float = math.inf,
    max_iter: int = 1000,
    tol: float = 1e-9,
    check_every: int = 10,
    return_log: bool = False,
):
    """Entropic barycenter of histograms on a fixed support (module docstring for the maths).

    Args:
        histograms: ``(K, n)`` or a batch ``(..., K, n)`` of K non-negative histograms each; balanced problems need
            equal totals within each batch element.
        cost: ``(n, m)`` (shared) or ``(..., n, m)``: cost from the histograms' support (rows) to the barycenter's
            (columns); POT's ``M`` when ``m = n``.
        eps: entropic strength ``> 0``, in cost units (POT's ``reg``).
        weights: ``(K,)`` or ``(..., K)`` non-negative barycentric weights, normalised to sum to 1; default uniform.
        rho: marginal relaxation (POT's ``reg_m``); ``inf`` (default) is the balanced barycenter.
        max_iter: iteration cap. tol: stopping tolerance, checked every ``check_every`` iterations; balanced: the
            largest ``|P_k^T 1 - q|_1``; unbalanced: the relative change of ``q`` (POT's rule). ``tol=0`` runs
            exactly ``max_iter`` iterations.
        return_log: also return ``{"iterations", "error", "converged", "log_u" (..., n, K), "log_v" (..., m, K)}``.

    Returns:
        ``(..., m)``: the barycenter (mass: the common mass of the histograms when balanced), differentiable with
        respect to the histograms, the cost and the weights (through the iterations). A histogram entry that is
        exactly 0 gets a gradient of 0 (a structural zero, as the masses of :class:`otalign.Problem`).

    Example::

        >>> q = otalign.barycenter(torch.stack([a1, a2, a3]), C, eps=0.01)   # (n,)
    """
    histograms = check_points("histograms", histograms, min_dim=2)
    cost = check_points("cost", cost, min_dim=2)
    eps = check_eps(eps)
    rho = check_rho("rho", rho)
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_number("tol", tol)
    check_every = check_positive_int("check_every", check_every)
    if rho == 0:
        raise ValueError("rho: must be > 0 for a barycenter (rho = 0 leaves the histograms unconstrained)")
    n = histograms.shape[-1]
    if cost.shape[-2] != n:
        raise ValueError(f"cost: expected {n} rows (the histograms' support), got shape {tuple(cost.shape)}")
    if cost.dtype != histograms.dtype or cost.device != histograms.device:
        raise ValueError(f"cost: expected {histograms.dtype} on {histograms.device} like histograms")
    try:
        torch.broadcast_shapes(histograms.shape[:-2], cost.shape[:-2])
    except RuntimeError:
        raise ValueError(f"cost: batch axes {tuple(cost.shape[:-2])} do not broadcast with the histograms' "
                         f"{tuple(histograms.shape[:-2])}") from None
    _check_histograms(histograms, balanced=math.isinf(rho))
    w = _barycentric_weights(weights, histograms)
    lam = 1.0 if math.isinf(rho) else rho / (rho + eps)
    # an entry that is exactly 0 is a structural zero: its gradient is 0 (the barycenter's derivative there is
    # one-sided, and infinite for rho < inf), never 0 / 0
    solver = _Iteration(cost, eps, structural_zeros(histograms).transpose(-1, -2), w, lam)
    q, info = solver.run(max_iter, tol, check_every)
    return (q, info) if return_log else q


class _Iteration:
    """The Bregman-projection loop, columns = histograms: ``log_a (..., n, K)``, ``w (..., 1, K)``."""

    def __init__(self, cost: Tensor, eps: float, hist: Tensor, w: Tensor, lam: float):
        self.cost, self.eps, self.lam, self.w = cost, eps, lam, w
        self.masses = hist
        self.log_a = safe_log(hist)  # zeros -> -inf: no mass, u = 0 (a gradient of 0 there, not 0 / 0)
        self.floor = -700.0 if cost.dtype == torch.float64 else -80.0
        precision = 1e-12 if cost.dtype == torch.float64 else 1e-6
        self.threshold = 2 * max(cost.shape[-1], cost.shape[-2]) * math.exp(self.floor) / precision
        self.kernel: Optional[Tensor] = (-cost / eps).clamp(min=self.floor).exp()
        self.log_kernel: Optional[Tensor] = None
        self.shift_u: Optional[Tensor] = None
        #: rows per block of the one-pass iteration: about 1 MiB of kernel, still in cache when read the second time
        self.block = max(8, (1 << 17) // max(1, cost.shape[-1] * math.prod(cost.shape[:-2])))

    def log_product(self, h: Tensor, transpose: bool) -> Tensor:
        """``log(K exp(h))`` (``h (..., m, K)`` -> ``(..., n, K)``) or ``log(K^T exp(h))`` when ``transpose``."""
        if self.kernel is not None:
            shift = h.amax(-2, keepdim=True).clamp(min=torch.finfo(h.dtype).min)  # a column of zeros keeps -inf
            kernel = self.kernel.transpose(-1, -2) if transpose else self.kernel
            sums = kernel @ (h - shift).clamp(min=self.floor).exp()
            if bool((sums.detach() >= self.threshold).all()):
                return sums.log() + shift
            self.kernel = None  # some sum is too small to trust: exact log-sum-exp from here on
        if self.log_kernel is None:
            self.log_kernel = -self.cost / self.eps
        log_k = self.log_kernel.transpose(-1, -2) if transpose else self.log_kernel
        return _log_matmul(log_k, h)

    def half_steps(self, log_v: Tensor) -> tuple[Tensor, Tensor]:
        """``log u = lam (log a - log K v)`` and ``log K^T u``. On the CPU in one pass over the kernel: each block of
        rows gives its ``u`` and at once its part of ``K^T u`` while it is in cache (the kernel is read once per
        iteration instead of twice), with three operations per block (two products and a division: the scalings are
        kept as ``exp(log u - shift)`` inside the pass). The shift of ``u`` is the last iteration's maximum; the pass
        is certified afterwards (no sum below the threshold, no exponent above the margin) or ``K^T u`` is
        recomputed."""
        lam = self.lam
        if self.kernel is None or self.kernel.is_cuda or self.shift_u is None:
            log_u = lam * (self.log_a - self.log_product(log_v, transpose=False))
            self.shift_u = log_u.detach().amax(-2, keepdim=True).clamp(min=torch.finfo(log_u.dtype).min)
            return log_u, self.log_product(log_u, transpose=True)
        kernel, shift_u = self.kernel, self.shift_u
        shift_v = log_v.detach().amax(-2, keepdim=True).clamp(min=torch.finfo(log_v.dtype).min)
        log_scale = -lam * shift_v - shift_u  # u exp(-shift_u) = (a / K v)^lam exp(log_scale), K v = sums exp(shift_v)
        if not bool((log_scale.abs() <= -0.9 * self.floor).all()):
            self.shift_u = None
            return self.half_steps(log_v)
        scaled_v = (log_v - shift_v).clamp(min=self.floor).exp()
        scale = log_scale.exp()
        masses = self.masses * scale if lam == 1.0 else self.masses
        total, scaled_u, all_sums = None, [], []
        for start in range(0, kernel.shape[-2], self.block):
            rows = kernel[..., start:start + self.block, :]
            sums = rows @ scaled_v
            ratio = masses[..., start:start + self.block, :] / sums
            part = ratio if lam == 1.0 else _power(ratio, lam) * scale
            all_sums.append(sums)
            scaled_u.append(part)
            term = rows.transpose(-1, -2) @ part
            total = term if total is None else total + term
        if float(torch.cat(all_sums, -2).detach().amin()) < self.threshold:
            self.kernel = None  # a sum too small to trust: exact log-sum-exp from here on
            return self.half_steps(log_v)
        log_u = safe_log(torch.cat(scaled_u, dim=-2)) + shift_u
        top = log_u.detach().amax(-2, keepdim=True)
        self.shift_u = top.clamp(min=torch.finfo(log_u.dtype).min)
        if bool((top <= shift_u - 0.25 * self.floor).all()) and bool((total.detach() >= self.threshold).all()):
            return log_u, total.log() + shift_u
        return log_u, self.log_product(log_u, transpose=True)

    def run(self, max_iter: int, tol: float, check_every: int) -> tuple[Tensor, dict]:
        lam, w = self.lam, self.w
        batch = torch.broadcast_shapes(self.log_a.shape[:-2], self.cost.shape[:-2])
        shape_v = batch + (self.cost.shape[-1], self.log_a.shape[-1])
        log_v = self.log_a.new_zeros(shape_v)
        error = torch.full(batch, math.inf, dtype=self.log_a.dtype)
        log_q = None
        converged, it = False, 0
        for it in range(1, max_iter + 1):
            log_u, log_ktu = self.half_steps(log_v)
            previous = log_q
            if lam == 1.0:
                log_q = (w * log_ktu).sum(-1)
            else:
                log_q = torch.logsumexp(w.log() + (1 - lam) * log_ktu, -1) / (1 - lam)
            if tol > 0 and (it % check_every == 0 or it == max_iter):
                error = self._error(log_q, previous, log_v, log_ktu)
            log_v = lam * (log_q.unsqueeze(-1) - log_ktu)
            if tol > 0 and bool((error <= tol).all()):
                converged = True
                break
        info = {"iterations": it, "error": error, "converged": converged, "log_u": log_u, "log_v": log_v}
        return log_q.exp(), info

    def _error(self, log_q: Tensor, previous: Optional[Tensor], log_v: Tensor, log_ktu: Tensor) -> Tensor:
        with torch.no_grad():
            q = log_q.exp()
            if self.lam == 1.0:  # every coupling's column marginal v_k K^T u_k (before v_k's update) against q
                return (torch.exp(log_v + log_ktu) - q.unsqueeze(-1)).abs().sum(-2).amax(-1)
            if previous is None:
                return torch.full(q.shape[:-1], math.inf, dtype=q.dtype)
            before = previous.exp()
            scale = torch.maximum(q.abs().amax(-1), before.abs().amax(-1)).clamp(min=1.0)
            return (q - before).abs().amax(-1) / scale


def _power(x: Tensor, lam: float) -> Tensor:
    """``x^lam`` for ``0 < lam < 1`` with a gradient of 0 (not infinite) where ``x`` is 0."""
    zero = x == 0
    return torch.where(zero, torch.ones_like(x), x).pow(lam).masked_fill(zero, 0.0)


def _log_matmul(log_k: Tensor, h: Tensor) -> Tensor:
    """``out[..., i, k] = LSE_j(log_k[..., i, j] + h[..., j, k])`` in row blocks (no ``n x m x K`` temporary)."""
    rows = log_k.shape[-2]
    per_row = log_k.shape[-1] * h.shape[-1] * max(1, math.prod(torch.broadcast_shapes(log_k.shape[:-2], h.shape[:-2])))
    step = max(1, (1 << 22) // per_row)
    parts = [
        torch.logsumexp(log_k[..., i:i + step, :, None] + h[..., None, :, :], dim=-2) for i in range(0, rows, step)
    ]
    return torch.cat(parts, dim=-2)


def _check_histograms(histograms: Tensor, balanced: bool) -> None:
    if not checks_enabled():
        return
    h = histograms.detach()
    if bool((h < 0).any()):
        raise ValueError(f"histograms: must be non-negative (found {float(h.min()):g})")
    totals = h.sum(-1)
    if bool((totals <= 0).any()):
        raise ValueError("histograms: a histogram sums to 0")
    if balanced and not bool(torch.allclose(totals, totals[..., :1].expand_as(totals), rtol=1e-6, atol=0)):
        raise ValueError("histograms: a balanced barycenter needs histograms of equal total mass (pass a finite "
                         "rho for unbalanced ones)")


def _barycentric_weights(weights, histograms: Tensor) -> Tensor:
    """``(..., 1, K)`` weights summing to 1 (uniform by default)."""
    n_hist = histograms.shape[-2]
    if weights is None:
        return histograms.new_full((1, n_hist), 1.0 / n_hist)
    w = check_weights("weights", weights.movedim(-1, 0) if isinstance(weights, Tensor) else weights, (n_hist,),
                      histograms)
    w = w.movedim(0, -1)
    return (w / w.sum(-1, keepdim=True)).unsqueeze(-2)
