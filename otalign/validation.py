"""Input checks. Every error names the argument and says what was wrong."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from .geometry import DenseCost, Geometry, PointCloud

#: Relative tolerance on ``|sum a - sum b|`` for problems with two hard marginals.
MASS_RTOL = 1e-5
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_float_tensor(name: str, x: Tensor) -> Tensor:
    """A floating tensor, not empty, finite; half precision promoted to float32."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point()):
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name}: is empty (shape {tuple(x.shape)})")
    if x.dtype in _LOW_PRECISION:
        x = x.float()
    if torch.isnan(x).any():
        raise ValueError(f"{name}: contains NaN")
    if torch.isinf(x).any():
        raise ValueError(f"{name}: contains inf (use `mask=` to forbid pairs instead of infinite costs)")
    return x


def check_eps(eps) -> float:
    if isinstance(eps, Tensor):
        if eps.numel() != 1:
            raise ValueError(f"eps: expected a scalar, got a tensor of shape {tuple(eps.shape)}")
        eps = eps.item()
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps: expected a positive number, got {eps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"eps: must be a finite number > 0, got {value}")
    return value


def check_rho(name: str, rho) -> float:
    try:
        value = float(rho)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number in [0, inf], got {rho!r}") from None
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name}: must be >= 0 (inf = hard constraint, 0 = free), got {value}")
    return value


def check_masses(name: str, mass: Optional[Tensor], size: int, batch: Optional[int], like: Tensor) -> Tensor:
    if mass is None:
        shape = (size,) if batch is None else (batch, size)
        return torch.full(shape, 1.0 / size, dtype=like.dtype, device=like.device)
    if not isinstance(mass, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of masses, got {type(mass).__name__}")
    if mass.device != like.device:
        raise ValueError(f"{name}: is on {mass.device} but the cost is on {like.device}")
    if not mass.is_floating_point():
        mass = mass.to(like.dtype)
    mass = check_float_tensor(name, mass).to(like.dtype)
    expected = [(size,)] + ([(batch, size)] if batch is not None else [])
    if tuple(mass.shape) not in expected:
        raise ValueError(f"{name}: expected shape {' or '.join(map(str, expected))}, got {tuple(mass.shape)}")
    if (mass < 0).any():
        raise ValueError(f"{name}: masses must be non-negative, found {mass.min().item():g}")
    if (mass.sum(-1) <= 0).any():
        raise ValueError(f"{name}: total mass must be positive")
    if batch is not None and mass.dim() == 1:
        mass = mass.expand(batch, size)
    return mass


def check_problem(cost, a, b, eps, rho_a, rho_b, reference, mask):
    """Validate a :class:`~otalign.problem.Problem`'s arguments; returns ``(geometry, a, b)``."""
    if reference not in ("product", "uniform"):
        raise ValueError(f"reference: expected 'product' or 'uniform', got {reference!r}")
    check_eps(eps)
    rho_a, rho_b = check_rho("rho_a", rho_a), check_rho("rho_b", rho_b)
    geometry = _check_geometry(cost, mask)
    like = geometry.tensors()[0]
    a = check_masses("a", a, geometry.n, geometry.batch, like)
    b = check_masses("b", b, geometry.m, geometry.batch, like)
    if math.isinf(rho_a) and math.isinf(rho_b):
        sa, sb = a.sum(-1), b.sum(-1)
        if ((sa - sb).abs() > MASS_RTOL * torch.maximum(sa, sb)).any():
            raise ValueError(
                f"a, b: a balanced problem (rho_a = rho_b = inf) needs equal total masses, got sum(a) = "
                f"{sa.flatten()[0].item():.6g} and sum(b) = {sb.flatten()[0].item():.6g}; normalise them or relax a "
                f"marginal with a finite rho"
            )
    return geometry, a, b


def _check_geometry(cost: Union[Tensor, Geometry], mask: Optional[Tensor]) -> Geometry:
    if isinstance(cost, PointCloud):
        if mask is not None:
            raise ValueError("mask: only supported for cost matrices, not point clouds")
        x = check_float_tensor("x", cost.x)
        y = check_float_tensor("y", cost.y)
        if x.dtype != y.dtype:
            raise TypeError(f"x, y: dtypes differ ({x.dtype} vs {y.dtype})")
        if x.device != y.device:
            raise ValueError(f"x, y: devices differ ({x.device} vs {y.device})")
        return cost.with_tensors((x, y))
    if isinstance(cost, Geometry) and not isinstance(cost, DenseCost):
        return cost
    if isinstance(cost, DenseCost):
        mask = cost.mask if mask is None else mask
        cost = cost.cost if cost.mask is None else _unmasked(cost)
    if not isinstance(cost, Tensor):
        raise TypeError(f"cost: expected a tensor (n, m) / (B, n, m) or a Geometry, got {type(cost).__name__}")
    if cost.dim() not in (2, 3):
        raise ValueError(f"cost: expected shape (n, m) or (B, n, m), got {tuple(cost.shape)}")
    cost = check_float_tensor("cost", cost)
    if mask is not None:
        mask = _check_mask(mask, cost)
    return DenseCost(cost, mask)


def _unmasked(geometry: DenseCost) -> Tensor:
    return torch.where(geometry.mask, 0.0, geometry.cost)


def _check_mask(mask: Tensor, cost: Tensor) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError("mask: expected a bool tensor (True = forbidden pair)")
    try:
        full = mask.expand_as(cost)
    except RuntimeError:
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not broadcast to the cost {tuple(cost.shape)}") from None
    if full.all(-1).any() or full.all(-2).any():
        raise ValueError("mask: forbids every pair of some row or column; that mass could not be transported")
    return mask.to(cost.device)
