"""Input checks shared by the closed-form OT tools (1-D, sliced, Gaussian, barycenters): each error names the
argument. Value checks (NaN, inf, signs, totals) follow :func:`otalign.checks.checks_enabled`."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .checks import as_tensor, check_float_tensor, check_tensor, checks_enabled


def check_points(name: str, x, min_dim: int = 1) -> Tensor:
    """A finite, non-empty floating tensor with at least ``min_dim`` dimensions (half precision -> float32)."""
    check_tensor(name, x)
    if x.dim() < min_dim:
        raise ValueError(f"{name}: expected at least {min_dim} dimension(s), got shape {tuple(x.shape)}")
    return check_float_tensor(name, x)


def check_weights(name: str, w, shape: tuple[int, ...], like: Tensor, axis: int = 0) -> Tensor:
    """Non-negative finite weights broadcastable to ``shape`` along ``axis`` (their length must be
    ``shape[axis]``), with a positive total; returned in ``like``'s dtype and device."""
    w = as_tensor(name, w, like)
    if not w.is_floating_point():
        w = w.to(like.dtype)
    w = w.to(device=like.device, dtype=like.dtype)
    if w.dim() == 0 or w.shape[0] != shape[axis]:
        raise ValueError(f"{name}: expected {shape[axis]} weights along its first axis, got shape {tuple(w.shape)}")
    if checks_enabled():
        detached = w.detach()
        if bool(torch.isnan(detached).any()):
            raise ValueError(f"{name}: contains NaN")
        if bool(torch.isinf(detached).any()):
            raise ValueError(f"{name}: contains inf")
        if bool((detached < 0).any()):
            raise ValueError(f"{name}: weights must be non-negative (found {float(detached.min()):g})")
        if bool((detached.sum(0) <= 0).any()):
            raise ValueError(f"{name}: the weights sum to 0; a measure needs a positive total mass")
    return w


def check_equal_totals(name_a: str, a: Tensor, name_b: str, b: Tensor, dim: int = -1, rtol: float = 1e-6) -> None:
    """Raise unless the total masses of ``a`` and ``b`` (summed over ``dim``) agree to ``rtol``."""
    if not checks_enabled():
        return
    sa, sb = a.detach().sum(dim), b.detach().sum(dim)
    if not bool(torch.allclose(sa, sb, rtol=rtol, atol=0.0)):
        raise ValueError(f"{name_a}, {name_b}: total masses differ ({float(sa.flatten()[0]):.8g} vs "
                         f"{float(sb.flatten()[0]):.8g}); this transport needs equal totals")


def check_order(p) -> float:
    """The order ``p >= 1`` of a Wasserstein distance."""
    from .checks import check_number

    return check_number("p", p, minimum=1.0)


def optional_weights(name: str, w: Optional[Tensor], shape: tuple[int, ...], like: Tensor) -> Optional[Tensor]:
    """``None`` or :func:`check_weights`."""
    return None if w is None else check_weights(name, w, shape, like)
