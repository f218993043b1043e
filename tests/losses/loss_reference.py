"""Plain reference implementations for the loss tests, written from the papers' formulas.

Nothing here uses otalign: kernels are built with explicit loops or plain tensor algebra, Sinkhorn is the textbook
scaling loop ``u <- (a / K v)^lam``, ``v <- (b / K^T u)^lam`` in the kernel domain (fine in float64 at eps = 0.5).
Layout: views stacked view-blocked, ``Z = [z0; z1; ...]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def similarities(views) -> Tensor:
    """``s_ij = cos(Z_i, Z_j)`` for the stacked views."""
    z = torch.cat(list(views))
    unit = z / z.norm(dim=1, keepdim=True)
    return unit @ unit.T


def pairing(n: int, n_views: int) -> Tensor:
    """``T[i, j] = 1`` when ``i != j`` are views of the same sample."""
    rows = n * n_views
    out = torch.zeros(rows, rows, dtype=torch.float64)
    for i in range(rows):
        for j in range(rows):
            if i != j and i % n == j % n:
                out[i, j] = 1.0
    return out


def kernel(views, eps: float) -> Tensor:
    """``K = exp(s / eps)`` with a zero diagonal (self-pairs excluded)."""
    s = similarities(views)
    return torch.exp(s / eps) * (1 - torch.eye(s.shape[0], dtype=s.dtype))


def sinkhorn_v(k: Tensor, iterations: int, lam: float = 1.0) -> Tensor:
    """``v`` after ``iterations`` scaling iterations with masses 1 (``lam = 1`` balanced)."""
    v = torch.ones(k.shape[1], dtype=k.dtype)
    for _ in range(iterations):
        u = (1.0 / (k @ v)) ** lam
        v = (1.0 / (k.T @ u)) ** lam
    return v


def kl_per_anchor(k_tilde: Tensor, target: Tensor) -> Tensor:
    """``-sum_j That_ij log Phat_ij``, both row-normalised."""
    p_hat = k_tilde / k_tilde.sum(1, keepdim=True)
    t_hat = target / target.sum(1, keepdim=True)
    logs = torch.where(t_hat > 0, torch.log(torch.where(t_hat > 0, p_hat, 1.0)), 0.0)
    return -(t_hat * logs).sum(1)


def robust_per_anchor(k_tilde: Tensor, target: Tensor, q: float, lam: float) -> Tensor:
    """Chuang et al.'s RINCE term on a kernel: ``-pos^q / q + (lam * all)^q / q``."""
    pos = (target * k_tilde).sum(1)
    total = k_tilde.sum(1)
    return -(pos**q) / q + (lam * total) ** q / q


def nt_xent(views, eps: float) -> Tensor:
    """SimCLR's NT-Xent, two views, one anchor at a time (loops)."""
    z = torch.cat(list(views))
    n = views[0].shape[0]
    unit = z / z.norm(dim=1, keepdim=True)
    losses = []
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        logits = torch.stack([unit[i] @ unit[j] / eps for j in range(2 * n) if j != i])
        index = partner if partner < i else partner - 1
        losses.append(torch.logsumexp(logits, 0) - logits[index])
    return torch.stack(losses)


def rince_chuang(views, eps: float, q: float, lam: float) -> Tensor:
    """RINCE (Chuang et al. 2022, eq. 3) for two views, per anchor:
    ``-e^{q s+/t}/q + (lam (e^{s+/t} + sum_neg e^{s-/t}))^q / q``."""
    z = torch.cat(list(views))
    n = views[0].shape[0]
    unit = z / z.norm(dim=1, keepdim=True)
    out = []
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        pos = torch.exp(unit[i] @ unit[partner] / eps)
        neg = sum(torch.exp(unit[i] @ unit[j] / eps) for j in range(2 * n) if j not in (i, partner))
        negative = (lam * (pos + neg)) ** q / q if lam > 0 else 0.0  # lam = 0: no term (its gradient is 0 * inf)
        out.append(-(pos**q) / q + negative)
    return torch.stack(out)


def supcon_out(views, labels: Tensor, eps: float) -> Tensor:
    """Khosla et al. (2020) ``L_out`` per anchor over all views:
    ``-1/|P(i)| sum_{p in P(i)} log( exp(s_ip/t) / sum_{a != i} exp(s_ia/t) )``."""
    z = torch.cat(list(views))
    y = labels.repeat(len(views))
    unit = z / z.norm(dim=1, keepdim=True)
    out = []
    for i in range(z.shape[0]):
        others = [a for a in range(z.shape[0]) if a != i]
        log_denominator = torch.logsumexp(torch.stack([unit[i] @ unit[a] / eps for a in others]), 0)
        positives = [p for p in others if y[p] == y[i]]
        terms = [unit[i] @ unit[p] / eps - log_denominator for p in positives]
        out.append(-torch.stack(terms).mean())
    return torch.stack(out)
