"""Input checks. Every error names the argument and says what was wrong.

Checks that read tensor values (finiteness, signs, mass totals, mask coverage) cost a pass over the data and, on a
GPU, a device-to-host read that stalls the stream. They run at the public entry points while
:func:`checks_enabled` is true: always, unless switched off globally with :func:`set_validation` (a training loop
whose inputs are known to be good, or a ``torch.compile`` region, which cannot read values), or inside a
:class:`trusted` block (the library's own internal calls on inputs it has already validated once). Structural
checks (types, shapes, devices, Python numbers) always run; they read nothing from the device.

One conversion rule holds at every public entry point (:func:`as_tensor`): where otalign takes a data tensor that
it does not differentiate through (a cost, masses ``a``/``b``, a mask, a target plan, labels, domains, view
qualities, features to evaluate), it also accepts a NumPy array or a (nested) list of numbers and converts it with
``torch.as_tensor``, onto the device of the tensor it goes with. Embeddings that a loss differentiates must be
tensors.
"""

from __future__ import annotations

import math
import operator
import threading
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from .geometry import DenseCost, Geometry, PointCloud

class _Switches(threading.local):
    trusted_depth = 0


_GLOBAL = {"enabled": True}
_LOCAL = _Switches()


def set_validation(enabled: bool) -> None:
    """Switch the value checks of every public entry point on (default) or off, process-wide.

    Off, a GCA loss's forward and backward make no device-to-host read (a training step never stalls the GPU
    stream) and can be compiled with ``torch.compile(fullgraph=True)``; bad values (NaN embeddings, negative
    masses) then go unreported. Structural checks (shapes, types, devices) still run.

    Example::

        >>> otalign.set_validation(False)
        >>> step = torch.compile(loss_fn, fullgraph=True)
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected True or False, got {enabled!r}")
    _GLOBAL["enabled"] = enabled


def validation_enabled() -> bool:
    """Whether value checks are switched on globally (:func:`set_validation`)."""
    return _GLOBAL["enabled"]


def checks_enabled() -> bool:
    """Whether value checks run here: switched on globally and not inside a :class:`trusted` block."""
    return _GLOBAL["enabled"] and _LOCAL.trusted_depth == 0


class trusted:
    """Context manager for internal calls on inputs validated once at the public boundary: value checks are
    skipped inside (per thread), so a loss does not re-check its target in the aligner, the solver and each
    divergence."""

    def __enter__(self) -> "trusted":
        if not torch.compiler.is_compiling():  # a compiled region reads no values anyway
            _LOCAL.trusted_depth += 1
        return self

    def __exit__(self, *exc) -> None:
        if not torch.compiler.is_compiling():
            _LOCAL.trusted_depth -= 1


def is_inf(x: float) -> bool:
    """``math.isinf`` written as comparisons, which ``torch.compile`` can trace on symbolic floats."""
    return x == math.inf or x == -math.inf


def is_nan(x: float) -> bool:
    """``math.isnan`` as a comparison (traceable, see :func:`is_inf`)."""
    return x != x


def is_finite(x: float) -> bool:
    """``math.isfinite`` as comparisons (traceable, see :func:`is_inf`)."""
    return not (is_nan(x) or is_inf(x))


#: Relative tolerance on ``|sum a - sum b|`` for problems with two hard marginals.
MASS_RTOL = 1e-5
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_tensor(name: str, x) -> Tensor:
    """A dense tensor whose values can be read: not on the ``meta`` device (no data), not sparse (any layout)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.is_meta:
        raise ValueError(f"{name}: is on the 'meta' device, which holds no values")
    if x.layout != torch.strided:
        raise ValueError(f"{name}: is a sparse tensor ({x.layout}); otalign needs dense ones: pass {name}.to_dense()")
    return x


def as_tensor(name: str, value: Any, like: Optional[Tensor] = None) -> Tensor:
    """``value`` as a tensor: a tensor is returned as it is; a NumPy array, NumPy scalar, or (nested) list or
    tuple of numbers is converted with ``torch.as_tensor`` (keeping its dtype; a list of floats takes ``like``'s
    floating dtype) and placed on ``like``'s device.

    Raises a ``TypeError`` naming ``name`` for anything else (``None``, strings, dicts, ragged or object arrays).

    Example::

        >>> as_tensor("labels", np.array([0, 1, 1])).dtype
        torch.int64
    """
    if isinstance(value, Tensor):
        return check_tensor(name, value)
    converted = None
    if isinstance(value, (np.ndarray, np.generic, list, tuple)) and getattr(value, "dtype", None) != object:
        try:
            converted = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    if converted is None:
        raise TypeError(f"{name}: expected a torch.Tensor, a NumPy array or a list of numbers, got {_describe(value)}")
    if like is None:
        return converted
    if isinstance(value, (list, tuple)) and converted.is_floating_point() and like.is_floating_point():
        converted = torch.as_tensor(value, dtype=like.dtype)  # Python floats are doubles: no float32 detour
    return converted.to(like.device)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a NumPy array of dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} that is not a rectangular array of numbers"
    return type(value).__name__


def check_same_device(name: str, x: Tensor, like: Tensor, what: str = "the cost") -> None:
    """Raise unless ``x`` is on ``like``'s device."""
    if x.device != like.device:
        raise ValueError(f"{name}: is on {x.device} but {what} is on {like.device}")


def check_float_tensor(name: str, x: Tensor) -> Tensor:
    """A floating tensor, not empty, finite; half precision promoted to float32."""
    x = _float_dtype(name, x)
    if checks_enabled():
        _check_finite(name, *(float(v) for v in torch.aminmax(x.detach())))  # one pass: NaN propagates into aminmax
    return x


def _float_dtype(name: str, x: Tensor) -> Tensor:
    """Checks that ``x`` is a non-empty floating tensor; half precision comes back as float32."""
    check_tensor(name, x)
    if not (x.is_floating_point()):
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name}: is empty (shape {tuple(x.shape)})")
    return x.float() if x.dtype in _LOW_PRECISION else x


def _check_finite(name: str, low: float, high: float) -> None:
    """Raises if the range ``(low, high)`` of a tensor shows NaN or inf in it."""
    if is_nan(low) or is_nan(high):
        raise ValueError(f"{name}: contains NaN")
    if is_inf(low) or is_inf(high):
        raise ValueError(f"{name}: contains inf (use `mask=` to forbid pairs instead of infinite costs)")


def as_real(name: str, value, expected: str) -> float:
    """``value`` as a Python float: a real number or a one-element real tensor (not a bool, string or None).
    ``expected`` completes the TypeError's "expected ..."."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: expected a scalar, got a tensor of shape {tuple(value.shape)}")
        check_tensor(name, value)
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}: expected {expected}, got a tensor of dtype {value.dtype}")
        value = value.item()
    if value is None or isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name}: expected {expected}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected {expected}, got {value!r}") from None


def check_number(name: str, value, minimum: float = 0.0, strict: bool = False, finite: bool = True) -> float:
    """A real number ``>= minimum`` (``> minimum`` when ``strict``), finite unless ``finite=False``; not NaN."""
    what = f"a {'finite ' if finite else ''}number {'>' if strict else '>='} {minimum:g}"
    out = as_real(name, value, what)
    if is_nan(out) or (finite and is_inf(out)) or out < minimum or (strict and out == minimum):
        raise ValueError(f"{name}: expected {what}, got {out!r}")
    return out


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (a Python or NumPy int, or a one-element integer tensor; not a bool or a float)."""
    out = None
    if isinstance(value, Tensor):
        integral = not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
        if integral and value.numel() == 1 and not value.is_meta:
            out = int(value.item())
    elif not isinstance(value, bool):
        try:
            out = operator.index(value)
        except TypeError:
            pass
    if out is None or out < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return out


def check_eps(eps) -> float:
    value = as_real("eps", eps, "a positive number")
    if not is_finite(value) or value <= 0:
        raise ValueError(f"eps: must be a finite number > 0, got {value}")
    return value


def check_rho(name: str, rho) -> float:
    value = as_real(name, rho, "a number in [0, inf]")
    if not value >= 0:  # NaN fails the comparison too
        raise ValueError(f"{name}: must be >= 0 (inf = hard constraint, 0 = free), got {value}")
    return value


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


def _check_geometry(
    cost: Union[Tensor, Geometry], mask: Optional[Tensor], columns_elsewhere: bool = False
) -> tuple[Geometry, Optional[float]]:
    """The validated geometry and ``max |C|`` for a cost matrix, an upper bound of it for a point cloud with a
    built-in cost (:meth:`PointCloud.cost_bound`), ``None`` for other geometries. ``columns_elsewhere``: these are
    some ranks' rows only, so a column may be forbidden in all of them."""
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
            _check_mask(cost.mask, geometry.cost, columns_elsewhere)
        return geometry, _largest_cost(geometry)
    if isinstance(cost, DenseCost):
        if cost.mask is not None:  # forbid both masks' pairs
            mask = _check_mask(mask, cost.cost, columns_elsewhere) | cost.mask
        cost = cost.cost
    if not isinstance(cost, (Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"cost: expected a tensor (n, m) / (B, n, m) or a Geometry, got {type(cost).__name__}")
    cost = as_tensor("cost", cost)
    _check_cost_shape(cost)
    cost = _float_dtype("cost", cost)
    if mask is not None:
        mask = _check_mask(mask, cost, columns_elsewhere)
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


def _check_mask(mask: Tensor, cost: Tensor, columns_elsewhere: bool = False) -> Tensor:
    if isinstance(mask, (np.ndarray, list, tuple)):
        mask = as_tensor("mask", mask, cost)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError("mask: expected a bool tensor (True = forbidden pair)")
    check_same_device("mask", mask, cost)
    check_tensor("mask", mask)
    try:
        full = mask.expand_as(cost)
    except RuntimeError:
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not broadcast to the cost {tuple(cost.shape)}") from None
    if checks_enabled() and (full.all(-1).any() or (not columns_elsewhere and full.all(-2).any())):
        raise ValueError("mask: forbids every pair of some row or column; that mass could not be transported")
    return mask
