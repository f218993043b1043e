"""Independent references for the GW tests: the GW energy as the literal four-index sum, and small seeded inputs."""

from __future__ import annotations

import torch

DTYPE = torch.float64


def brute_energy(Cx: torch.Tensor, Cy: torch.Tensor, P: torch.Tensor, loss: str) -> torch.Tensor:
    """``sum_{i,k,j,l} L(Cx[i,k], Cy[j,l]) P_ij P_kl`` with the (n, n, m, m) loss tensor written out."""
    s, t = Cx[:, :, None, None], Cy[None, None, :, :]
    if loss == "square":
        L = (s - t) ** 2
    else:
        L = torch.xlogy(s, s) - s * t.clamp_min(1e-18).log() - s + t
    return torch.einsum("ikjl,ij,kl->", L, P, P)


def clouds(n: int, m: int, seed: int, batch=None, dx: int = 3, dy: int = 2):
    """Points ``x (n, dx)``, ``y (m, dy)`` scaled so that the largest squared distance is about 1, and masses."""
    gen = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    x = torch.randn(lead + (n, dx), generator=gen, dtype=DTYPE) / 3
    y = torch.randn(lead + (m, dy), generator=gen, dtype=DTYPE) / 3
    a = torch.rand(lead + (n,), generator=gen, dtype=DTYPE) + 0.5
    b = torch.rand(lead + (m,), generator=gen, dtype=DTYPE) + 0.5
    return x, y, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


def sqdist(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, x) ** 2
