"""Checks of a whole :class:`~otalign.problem.Problem` (cost, masses, eps, rho, reference, mask), built on the
argument checks of :mod:`otalign.validation`. Every error names the argument and says what was wrong."""

from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch
from torch import Tensor

from .distributed import ShardedGeometry, agreement
from .geometry import Geometry, PointCloud
from .validation import (
    MASS_RTOL, _check_geometry, check_eps, check_masses, check_rho, checks_enabled, is_finite, is_inf,
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
    geometry, largest_cost = _check_geometry(cost, mask, columns_elsewhere=rows_total is not None)
    like = geometry.tensors()[0]
    a = check_masses("a", a, geometry.n, geometry.batch, like, default_size=rows_total)
    b = check_masses("b", b, geometry.m, geometry.batch, like)
    return geometry, a, b, largest_cost, (eps, rho_a, rho_b)


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
        allowed = (~local.mask.expand(local.cost.shape)).sum(-2, dtype=torch.float64)
        if bool((geometry.reduce_rows(allowed) == 0).any()):
            raise ValueError("mask: forbids every pair of some column on every rank; that mass could not be moved")
    if checks_enabled() and bool((geometry.reduce_rows(a.sum(-1)) <= 0).any()):
        raise ValueError("a: total mass (over all ranks) must be positive")
    check_problem_globally(geometry, a, b, *numbers, largest_cost, reference)
    return geometry, a, b


def plain_number(value):
    return value.item() if isinstance(value, Tensor) and value.numel() == 1 else value
