"""The presets' fused dense path: the same per-anchor losses as the aligner path, at the cost of a plain InfoNCE.

What the general path (:meth:`AlignmentLoss._align`: cost -> :class:`~otalign.Problem` -> solver -> plan ->
divergence) computes for the GCA presets, in the fewest passes over the ``(n, n)`` matrix (``n = V N``):

* one similarity product with the sign and the temperature folded in: ``L = unit(Z) @ (unit(Z) / eps)^T``
  (``L_ij = s_ij / eps = -C_ij / eps``), self-pairs filled with ``-inf``;
* rows-only plans (InfoNCE, RINCE, SupCon; ``v = 1``): the KL is a cross-entropy, ``lse_i(L) - sum_j T_ij L_ij``
  with the row-normalised target ``T`` (``F.cross_entropy``: with class indices for the two-view pairing, read by
  index and never built; with the cached normalised pairing or the label target as probabilities otherwise);
* plans with column constraints (GCA-InfoNCE, GCA-RINCE, GCA-UOT): the ``T`` scaling iterations
  ``u <- (1 / K v)^la``, ``v <- (1 / K^T u)^lb`` (masses 1, reference 1; ``la = rho_a / (rho_a + eps)``) on
  ``K = exp(L)`` (zero on the self-pairs): the kernel domain's scaling loop as one autograd node
  (:class:`otalign.softmin.scaling_loop.ScaledKernel`: ``2T + 1`` matrix-vector products and one rank-``(2T + 1)``
  product for ``dL/dK`` in its backward), instead of an autograd node per half-step;
* the KL and robust terms from the same row sums ``(K v)_i`` and positive entries: with
  ``K~ = K diag(v)``, ``KL_i = log (K v)_i - sum_j T_ij (L_ij + log v_j)``, ``pos_i = sum_j P_ij K~_ij``,
  ``all_i = (K v)_i``.

Used when the loss runs the default ``"sinkhorn"`` solver on one process with the default cost (``compat=None``)
on float32 or float64 embeddings and, for column-constrained plans, when ``K`` is representable: ``2 / eps`` (the spread of ``s / eps``) at most
:data:`SPREAD_LIMIT` for the dtype. Otherwise (and when validation finds a non-finite result, so that the general
path can raise its precise error) the general path runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor
from torch.nn import functional as F

from ..divergences import Robust, Weighted, _row_logsumexp, kl, robust
from ..problem import safe_log
from ..softmin.kernel_domain import SPREAD_LIMIT  # the largest spread / eps of the kernel domain, per dtype
from ..softmin.scaling_loop import ScaledKernel

_CACHE: dict[tuple, "Pairing"] = {}
_CACHE_SIZE = 16


@dataclass(frozen=True)
class Terms:
    """A divergence the fused path evaluates: ``kl * KL + robust * RINCE(q, lam)``."""

    kl: float
    robust: float
    q: float = 0.5
    lam: float = 0.01


def terms_of(divergence) -> Optional[Terms]:
    """The :class:`Terms` of ``kl``, a :class:`Robust` or a :class:`Weighted` sum of those; ``None`` for any other
    divergence, or all weights zero (the general path then runs)."""
    terms = divergence.terms if isinstance(divergence, Weighted) else [(1.0, divergence)]
    weight_kl, weight_robust, params = 0.0, 0.0, None
    for weight, term in terms:
        if term is kl:
            weight_kl += weight
            continue
        if term is robust:
            term = Robust()
        if not isinstance(term, Robust) or params not in (None, (term.q, term.lam)):
            return None
        weight_robust, params = weight_robust + weight, (term.q, term.lam)
    if not weight_kl and not weight_robust:
        return None
    return Terms(weight_kl, weight_robust, *(params or (0.5, 0.01)))


@dataclass(frozen=True)
class Pairing:
    """The instance-pairing structure of ``V`` views of ``N`` samples, view-blocked (``n = V N``).

    Attributes:
        self_pairs: ``(n, n)`` bool, the diagonal.
        positives: ``(n, V - 1)`` int64, the columns of each anchor's other views.
        target: ``(n, n)`` the pairing target (ones at the positives) in the batch's dtype.
        normalised: ``target / (V - 1)``: its rows normalised.
        weights: ``(n,)`` ones: every anchor has positives.
    """

    self_pairs: Tensor
    positives: Tensor
    target: Tensor
    normalised: Tensor
    weights: Tensor


def pairing(n: int, n_views: int, dtype: torch.dtype, device: torch.device) -> Pairing:
    """The :class:`Pairing` of ``n_views`` views of ``n`` samples, built once per (shape, dtype, device) and cached
    (built afresh inside a ``torch.compile`` region, where the graph holds it as a constant)."""
    key = (n, n_views, dtype, torch.device(device))
    if not torch.compiler.is_compiling() and key in _CACHE:
        return _CACHE[key]
    rows = n * n_views
    index = torch.arange(rows, device=device)
    shifts = torch.arange(1, n_views, device=device) * n
    positives = (index[:, None] + shifts[None, :]) % rows
    target = torch.zeros(rows, rows, dtype=dtype, device=device)
    target.scatter_(1, positives, 1.0)
    eye = torch.eye(rows, dtype=torch.bool, device=device)
    built = Pairing(eye, positives, target, target / (n_views - 1), torch.ones(rows, dtype=dtype, device=device))
    if not torch.compiler.is_compiling():
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = built
    return built


def kernel_allowed(eps: float, dtype: torch.dtype) -> bool:
    """Whether ``K = exp(s / eps)`` with ``s`` in [-1, 1] is representable for the scaling loop."""
    return dtype in SPREAD_LIMIT and 2.0 / eps <= SPREAD_LIMIT[dtype]


def per_anchor(
    embeddings: Tensor,
    target: Union[Pairing, Tensor],
    *,
    eps: float,
    iterations: int,
    lam_a: float,
    lam_b: float,
    terms: Terms,
    binary: bool = False,
) -> Tensor:
    """Per-anchor losses ``(n,)`` of the stacked views ``Z (n, d)`` against ``target`` (a :class:`Pairing` or a
    checked ``(n, n)`` target with a zero diagonal; ``binary``: its entries are 0 or 1, as built from labels).
    ``lam_b = 0``: rows-only plan (``v = 1``); otherwise ``iterations`` scaling iterations with exponents
    ``lam_a``, ``lam_b`` (1 for a hard side)."""
    unit = F.normalize(embeddings, dim=-1)
    logits = unit @ (unit / eps).T
    pairs = target if isinstance(target, Pairing) else None
    if lam_b == 0 and not terms.robust:  # a cross-entropy; the diagonal is filled in place (the product's
        if pairs is not None and pairs.positives.shape[1] == 1:  # backward does not read its output)
            logits.diagonal().fill_(-math.inf)
            return terms.kl * F.cross_entropy(logits, pairs.positives[:, 0], reduction="none")
        soft = pairs.normalised if pairs is not None else _normalise(target, binary)
        # a finite fill: its probability underflows to exactly 0 and 0 * fill = 0 in the soft cross-entropy
        logits.diagonal().fill_(-0.5 * torch.finfo(logits.dtype).max)
        return terms.kl * F.cross_entropy(logits, soft, reduction="none")
    if lam_b == 0:
        log_v = None
        masked = logits.masked_fill(_self_pairs(pairs, logits), -math.inf)
        log_row = torch.logsumexp(masked, dim=-1)
        positive = logits.gather(1, pairs.positives) if pairs is not None else None
    else:
        index = pairs.positives if pairs is not None else logits.new_empty((logits.shape[0], 0), dtype=torch.long)
        v, row_sums, positive = ScaledKernel.apply(logits, index, iterations, lam_a, lam_b, True)
        log_v = v.log()
        log_row = row_sums.log()
    loss: Optional[Tensor] = None
    if pairs is not None:
        if log_v is not None:
            positive = positive + log_v[pairs.positives]
        if terms.kl:
            loss = terms.kl * (log_row - positive.mean(-1))
        if terms.robust:
            log_pos = positive[:, 0] if positive.shape[1] == 1 else torch.logsumexp(positive, dim=-1)
            loss = _add(loss, terms.robust * _robust(log_pos, log_row, terms.q, terms.lam))
        return loss
    if terms.kl:
        normalised = _normalise(target, binary)
        cross = (normalised * logits).sum(-1)
        if log_v is not None:
            cross = cross + normalised @ log_v
        loss = terms.kl * (log_row * normalised.sum(-1) - cross)
    if terms.robust:
        shifted = logits.masked_fill(_self_pairs(None, logits), -math.inf)
        shifted = shifted if log_v is None else shifted + log_v
        log_pos = _row_logsumexp(shifted + safe_log(target)).squeeze(-1)
        robust_term = _robust(log_pos, log_row, terms.q, terms.lam).masked_fill(torch.isneginf(log_pos), 0.0)
        loss = _add(loss, terms.robust * robust_term)
    return loss


def _robust(log_pos: Tensor, log_all: Tensor, q: float, lam: float) -> Tensor:
    """RINCE per anchor from ``log pos`` and ``log all``: ``-(1/q) pos^q + (1/q) (lam all)^q``."""
    positive = torch.exp(q * log_pos) / q
    if lam == 0:
        return -positive
    return torch.exp(q * (log_all + math.log(lam))) / q - positive


def _normalise(target: Tensor, binary: bool = False) -> Tensor:
    """Rows divided by their maximum, then by their sum (at least 1): :func:`otalign.divergences.kl`'s rule.
    ``binary`` (entries 0 or 1): the division by the maximum (1) is skipped."""
    if binary:
        return target / target.sum(-1, keepdim=True).clamp_min(1.0)
    largest = target.amax(-1, keepdim=True)
    scaled = target / torch.where(largest > 0, largest, torch.ones_like(largest))
    return scaled / scaled.sum(-1, keepdim=True).clamp_min(1.0)


def _add(total: Optional[Tensor], term: Tensor) -> Tensor:
    return term if total is None else total + term


def _self_pairs(pairs: Optional[Pairing], logits: Tensor) -> Tensor:
    if pairs is not None:
        return pairs.self_pairs
    return torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
