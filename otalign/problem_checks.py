"""Checks of a whole :class:`~otalign.problem.Problem` (cost, masses, eps, rho, reference, mask), built on the
argument checks of :mod:`otalign.checks`. Every error names the argument and says what was wrong."""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .arrays import is_pandas
from .distributed import ShardedGeometry, agreement
from .geometry import DenseCost, Geometry, PointCloud
from .checks import (
    MASS_RTOL, _check_finite, _float_dtype, as_tensor, check_eps, check_float_tensor, check_rho, check_same_device,
    check_tensor, checks_enabled, is_finite, is_inf,
)


def check_problem(cost, a, b, eps, rho_a, rho_b, reference, mask):
    """Validate a :class:`~otalign.problem.Problem`'s arguments; returns ``(geometry, a, b)``.

    For a :class:`~otalign.distributed.ShardedGeometry` (rows split across ranks) the local checks run on every rank
    and their outcome is agreed on collectively before anything else (skipped inside ``trusted()``, whose caller
    vouches for its inputs), so that every rank raises if one does; the
    global conditions (total masses, eps against the largest cost, columns forbidden on every rank) are then
    checked on all-reduced quantities, identical on every rank."""
    if isinstance(cost, ShardedGeometry):
        return check_sharded_problem(cost, a, b, eps, rho_a, rho_b, reference, mask)
    geometry, a, b, largest_cost, numbers = check_problem_locally(cost, a, b, eps, rho_a, rho_b, reference, mask)
    check_problem_globally(geometry, a, b, *numbers, largest_cost, reference)
    return geometry, a, b


def check_problem_locally(cost, a, b, eps, rho_a, rho_b, reference, mask, rows_total: Optional[int] = None):
    """The checks of :func:`check_problem` that need no other rank; ``rows_total`` is the global row count when
    ``cost`` is one rank's rows. Returns ``(geometry, a, b, max |C| or None, (eps, rho_a, rho_b))``."""
    if not isinstance(reference, str) or reference not in ("product", "uniform"):
        raise ValueError(f"reference: expected 'product' or 'uniform', got {reference!r}")
    eps = check_eps(eps)
    rho_a, rho_b = check_rho("rho_a", rho_a), check_rho("rho_b", rho_b)
    geometry, largest_cost = _check_geometry(cost, mask)
    like = geometry.tensors()[0]
    a = check_masses("a", a, geometry.n, geometry.batch, like, default_size=rows_total)
    b = check_masses("b", b, geometry.m, geometry.batch, like)
    if checks_enabled():
        check_masked_lines(geometry, a, b, rho_a, rho_b, columns=rows_total is None)
    return geometry, a, b, largest_cost, (eps, rho_a, rho_b)


def check_masked_lines(geometry: Geometry, a: Tensor, b: Tensor, rho_a: float, rho_b: float,
                       columns: bool = True) -> None:
    """A row (column) whose every pair the mask forbids carries no mass. That is legal when its mass is 0 or its
    side is relaxed or free (``rho < inf``: the penalty, or nothing, prices the missing mass); on a hard side a
    positive mass there is infeasible. ``columns=False`` skips the columns (one rank's rows of a sharded problem:
    a column may be allowed in another rank's rows; :func:`check_sharded_problem` decides)."""
    mask = getattr(geometry, "mask", None)
    if mask is None:
        return
    full = mask.expand(geometry.cost.shape)
    sides = [("a", "row", "rho_a", full.all(-1), a, rho_a)]
    if columns:
        sides.append(("b", "column", "rho_b", full.all(-2), b, rho_b))
    for mass_name, line, rho_name, forbidden, mass, rho in sides:
        stranded = forbidden & (mass > 0)
        if is_inf(rho) and bool(stranded.any()):
            index = stranded.nonzero()[0].tolist()
            raise ValueError(
                f"mask: forbids every pair of {line} {index[-1]}{'' if len(index) == 1 else f' of problem {index[0]}'}"
                f", whose mass {mass_name} is positive on a hard side ({rho_name} = inf): that mass cannot be "
                f"transported; give it mass 0 or relax the side (finite {rho_name})"
            )


def check_problem_globally(geometry: Geometry, a: Tensor, b: Tensor, eps: float, rho_a: float, rho_b: float,
                           largest_cost: Optional[float], reference: str = "product") -> None:
    """The checks of :func:`check_problem` over all rows (``largest_cost`` already combined over ranks when
    sharded)."""
    fix = "centre and rescale the points" if isinstance(_local(geometry), PointCloud) else ""
    _check_range(eps, rho_a, rho_b, geometry.dtype, largest_cost, fix)
    if checks_enabled():
        _check_mass_range(geometry.reduce_rows(a.sum(-1)), b.sum(-1), a.dtype, reference, largest_cost, eps)
    if is_inf(rho_a) and is_inf(rho_b) and checks_enabled():
        sa, sb = geometry.reduce_rows(a.sum(-1)), b.sum(-1)
        if ((sa - sb).abs() > MASS_RTOL * torch.maximum(sa, sb)).any():
            raise ValueError(
                f"a, b: a balanced problem (rho_a = rho_b = inf) needs equal total masses, got sum(a) = "
                f"{sa.flatten()[0].item():.6g} and sum(b) = {sb.flatten()[0].item():.6g}; normalise them or relax a "
                f"marginal with a finite rho"
            )


def _check_range(
    eps: float, rho_a: float, rho_b: float, dtype: torch.dtype, largest_cost: Optional[float], fix: str = ""
) -> None:
    """eps, 1/eps and finite rho must be representable in the problem's dtype, and so must the potentials, which
    are of order ``eps |log mass|`` (at most ``eps * 745`` in float64, ``eps * 104`` in float32, the log of the
    smallest positive mass; zero masses have potentials ``-inf`` or none at all): so
    ``eps <= max / (4 * 745)``. eps must also resolve the cost: ``(f + g - C) / eps`` carries an absolute
    error of about ``max|C| u / eps`` (``u`` the unit roundoff), so below ``eps = max|C| u`` the plan is rounding
    noise (and may overflow to inf). ``largest_cost`` is ``max |C|`` or an upper bound of it (``None`` when
    unknown: custom cost callables); ``fix`` is the advice given when eps is too small."""
    finfo = torch.finfo(dtype)
    largest_log = -math.log(finfo.smallest_normal * finfo.eps)
    largest_eps = finfo.max / (4 * largest_log)
    if eps > largest_eps or 1.0 / eps > finfo.max:
        raise ValueError(
            f"eps: {eps:g} is out of range for {dtype} (eps at most {largest_eps:g}, 1/eps at most {finfo.max:g}); "
            f"use float64 or rescale the cost"
        )
    if largest_cost is not None and eps < largest_cost * finfo.eps:
        raise ValueError(
            f"eps: {eps:g} is below what a {dtype} cost with max |C| = {largest_cost:g} resolves (max |C| times the "
            f"unit roundoff, {largest_cost * finfo.eps:g}); use a larger eps or "
            + (fix or "shift the cost towards 0")
        )
    for name, rho in (("rho_a", rho_a), ("rho_b", rho_b)):
        if is_finite(rho) and rho > finfo.max:
            raise ValueError(f"{name}: {rho:g} is out of range for {dtype}; use inf for a hard constraint")


def _check_mass_range(total_a: Tensor, total_b: Tensor, dtype: torch.dtype, reference: str,
                      largest_cost: Optional[float], eps: float) -> None:
    """The objective must be representable: its terms are of order ``mass * (max |C| + eps)`` and, for the
    product reference, ``eps * sum(a) sum(b)`` (the reference's mass). Rejects masses whose products overflow.
    ``total_a``, ``total_b``: the total masses ``(...,)`` (over all ranks when sharded)."""
    finfo = torch.finfo(dtype)
    total_a, total_b = float(total_a.detach().max()), float(total_b.detach().max())
    for name, total in (("a", total_a), ("b", total_b)):
        if math.isinf(total):
            raise ValueError(f"{name}: the total mass overflows {dtype}; rescale the masses or use float64")
    scale = max(largest_cost if largest_cost is not None else 0.0, eps, 1.0)
    limit = finfo.max / 64
    if reference == "product" and total_a * total_b * max(eps, 1.0) > limit:
        raise ValueError(
            f"a, b: the product reference has mass sum(a) * sum(b) = {total_a * total_b:.3g}, which (times eps) "
            f"overflows {dtype}; rescale the masses (the plan and the objective scale with them) or use float64"
        )
    if max(total_a, total_b) * scale > limit:
        raise ValueError(
            f"a, b: total masses {total_a:.3g}, {total_b:.3g} times the cost scale {scale:.3g} overflow {dtype} in "
            f"the objective; rescale the masses or use float64"
        )


def _local(geometry: Geometry) -> Geometry:
    """This rank's geometry of a sharded one, else the geometry itself."""
    return geometry.local if isinstance(geometry, ShardedGeometry) else geometry


def check_sharded_problem(cost: ShardedGeometry, a, b, eps, rho_a, rho_b, reference, mask):
    """:func:`otalign.problem_checks.check_problem` for rows split across ranks: the local checks run on every rank and
    their outcome is agreed on before anything else (skipped inside ``trusted()``, whose caller vouches for its
    inputs), so that every rank raises if one does; then the global conditions (total masses, eps against the
    largest cost, no column forbidden on every rank) are checked on all-reduced quantities, the same on every rank.
    Returns ``(geometry, a, b)``."""
    facts = {"eps": plain_number(eps), "rho_a": plain_number(rho_a), "rho_b": plain_number(rho_b), "reference": reference,
             "a given": a is not None, "mask given": mask is not None,
             "b": None if not isinstance(b, Tensor) else (tuple(b.shape), str(b.dtype))}
    with agreement(facts, cost.group) if checks_enabled() else contextlib.nullcontext():
        local, a, b, largest_cost, numbers = check_problem_locally(cost.local, a, b, eps, rho_a, rho_b, reference,
                                                                   mask, cost.n_global)
    geometry = cost.with_local(local)
    if largest_cost is not None:
        largest = torch.tensor(largest_cost, dtype=torch.float64, device=geometry.device)
        largest_cost = float(geometry.reduce_rows(largest, "max"))
    if getattr(local, "mask", None) is not None and checks_enabled():
        _check_masked_columns(geometry, local, b, numbers[2])
    if checks_enabled() and bool((geometry.reduce_rows(a.sum(-1)) <= 0).any()):
        raise ValueError("a: total mass (over all ranks) must be positive")
    check_problem_globally(geometry, a, b, *numbers, largest_cost, reference)
    return geometry, a, b


def _check_masked_columns(geometry: ShardedGeometry, local, b: Tensor, rho_b: float) -> None:
    """The column half of :func:`otalign.problem_checks.check_masked_lines` over every rank's rows: a column that
    the mask forbids on every rank carries no mass, which a hard column side (rho_b = inf) allows only at b_j = 0."""
    allowed = (~local.mask.expand(local.cost.shape)).sum(-2, dtype=torch.float64)
    stranded = (geometry.reduce_rows(allowed) == 0) & (b > 0)
    if math.isinf(rho_b) and bool(stranded.any()):
        index = stranded.nonzero()[0].tolist()
        raise ValueError(
            f"mask: forbids every pair of column {index[-1]}{'' if len(index) == 1 else f' of problem {index[0]}'} on "
            f"every rank, whose mass b is positive on a hard side (rho_b = inf): that mass cannot be transported; "
            f"give it mass 0 or relax the side (finite rho_b)"
        )


def plain_number(value):
    return value.item() if isinstance(value, Tensor) and value.numel() == 1 else value


def check_masses(
    name: str, mass: Optional[Tensor], size: int, batch: Optional[int], like: Tensor, default_size: Optional[int] = None
) -> Tensor:
    """Masses of shape ``(size,)`` or ``(batch, size)``; ``None`` gives ``1 / default_size`` each (default ``size``;
    the global row count when the rows are sharded)."""
    default_size = size if default_size is None else default_size
    if mass is None:
        shape = (size,) if batch is None else (batch, size)
        return torch.full(shape, 1.0 / default_size, dtype=like.dtype, device=like.device)
    mass = as_tensor(name, mass, like)
    check_same_device(name, mass, like)
    mass = check_float_tensor(name, mass).to(like.dtype)
    expected = [(size,)] + ([(batch, size)] if batch is not None else [])
    if tuple(mass.shape) not in expected:
        raise ValueError(f"{name}: expected shape {' or '.join(map(str, expected))}, got {tuple(mass.shape)}")
    if checks_enabled() and (mass < 0).any():
        raise ValueError(f"{name}: masses must be non-negative, found {mass.min().item():g}")
    if checks_enabled() and default_size == size and (mass.sum(-1) <= 0).any():  # a shard may hold none
        raise ValueError(f"{name}: total mass must be positive")
    if batch is not None and mass.dim() == 1:
        mass = mass.expand(batch, size)
    return mass


def _check_geometry(cost: Union[Tensor, Geometry], mask: Optional[Tensor]) -> tuple[Geometry, Optional[float]]:
    """The validated geometry and ``max |C|`` for a cost matrix, an upper bound of it for a point cloud with a
    built-in cost (:meth:`PointCloud.cost_bound`), ``None`` for other geometries."""
    if isinstance(cost, PointCloud):
        if mask is not None:
            raise ValueError("mask: only supported for cost matrices, not point clouds")
        if cost.x.device != cost.y.device:
            raise ValueError(f"x, y: devices differ ({cost.x.device} vs {cost.y.device})")
        x = check_float_tensor("x", cost.x)
        y = check_float_tensor("y", cost.y)
        if x.dtype != y.dtype:
            raise TypeError(f"x, y: dtypes differ ({x.dtype} vs {y.dtype})")
        geometry = cost.with_tensors((x, y))
        _check_cost_function(geometry)
        return geometry, geometry.cost_bound() if checks_enabled() else None  # reads the points' norms
    if isinstance(cost, Geometry) and not isinstance(cost, DenseCost):
        return cost, None
    if isinstance(cost, DenseCost) and mask is None:  # keep its mask (already applied) and any known bounds
        _check_cost_shape(cost.cost)
        geometry = cost.with_tensors([_float_dtype("cost", cost.cost)])
        if cost.mask is not None:
            _check_mask(cost.mask, geometry.cost)
        return geometry, _largest_cost(geometry)
    if isinstance(cost, DenseCost):
        if cost.mask is not None:  # forbid both masks' pairs
            mask = _check_mask(mask, cost.cost) | cost.mask
        cost = cost.cost
    if not (isinstance(cost, (Tensor, np.ndarray, list, tuple)) or is_pandas(cost)):
        raise TypeError(f"cost: expected a tensor (n, m) / (B, n, m) or a Geometry, got {type(cost).__name__}")
    cost = as_tensor("cost", cost)
    _check_cost_shape(cost)
    cost = _float_dtype("cost", cost)
    if mask is not None:
        mask = _check_mask(mask, cost)
    geometry = DenseCost(cost, mask)
    return geometry, _largest_cost(geometry)


def _check_cost_shape(cost: Tensor) -> None:
    if cost.dim() not in (2, 3):
        raise ValueError(f"cost: expected shape (n, m) or (B, n, m), got {tuple(cost.shape)}")


def _largest_cost(geometry: DenseCost) -> float:
    """``max |C|`` over the allowed pairs: the geometry's known bounds when value checks are off, else measured
    (one pass; forbidden pairs' values do not matter) and checked finite."""
    if checks_enabled() or geometry.bounds_unknown:
        low, high = geometry.measure_bounds()
        _check_finite("cost", low, high)
    else:
        low, high = geometry.bounds()
    return max(-low, high)


def _check_cost_function(geometry: PointCloud) -> None:
    """The built-in costs need finite squared norms (``|x|^2`` overflows for entries near the dtype's limit, and
    then every cost is inf or 0); a custom cost callable must map ``x`` rows ``(..., k, d)`` and ``y (..., m, d)``
    to a floating ``(..., k, m)`` block, checked on the first row. ``O((n + m) d)``."""
    from .costs import CustomCost

    if not isinstance(geometry.cost_function, CustomCost):
        if not checks_enabled():
            return
        for name, points in (("x", geometry.x), ("y", geometry.y)):
            if not bool(torch.isfinite(points.detach().square().sum(-1)).all()):
                raise ValueError(
                    f"{name}: squared norms overflow {points.dtype} (entries too large for the "
                    f"{geometry.cost_name!r} cost); rescale the points"
                )
        return
    expected = geometry.batch_shape + (1, geometry.m)
    with torch.no_grad():
        probe = geometry.block(geometry.tensors(), 0, 1)
    if not isinstance(probe, Tensor) or tuple(probe.shape) != expected:
        got = tuple(probe.shape) if isinstance(probe, Tensor) else type(probe).__name__
        raise ValueError(
            f"cost: a cost function must map x rows (..., k, d) and y (..., m, d) to (..., k, m); for one row it "
            f"returned {got}, expected {expected}"
        )
    if not probe.is_floating_point():
        raise TypeError(f"cost: the cost function returned dtype {probe.dtype}, expected a floating dtype")


def _check_mask(mask: Tensor, cost: Tensor) -> Tensor:
    """The mask's type, device and shape. Whether a fully forbidden row or column is feasible depends on its mass
    and relaxation: :func:`otalign.problem_checks.check_masked_lines` decides."""
    if isinstance(mask, (np.ndarray, list, tuple)):
        mask = as_tensor("mask", mask, cost)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError("mask: expected a bool tensor (True = forbidden pair)")
    check_same_device("mask", mask, cost)
    check_tensor("mask", mask)
    try:
        mask.expand_as(cost)
    except RuntimeError:
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not broadcast to the cost {tuple(cost.shape)}") from None
    return mask
