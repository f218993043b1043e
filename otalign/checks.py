"""Argument checks (a leaf module: it imports no other otalign module). Every error names the argument and says
what was wrong; the checks of a whole problem are in :mod:`otalign.problem_checks`.

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
from typing import Any, Optional

import torch
from torch import Tensor

from . import arrays


class _Switches(threading.local):
    trusted_depth = 0
    override: Optional[bool] = None


_GLOBAL = {"enabled": True}
_LOCAL = _Switches()


class validation:
    """``with otalign.validation(False): ...``: value checks off (or on) inside the block, in this thread only;
    the previous setting returns on exit. Checks change which errors are raised, never a result: solves compute the
    same numbers either way.

    Example::

        >>> with otalign.validation(False):
        ...     loss = loss_fn(z0, z1)        # no device-to-host read
    """

    def __init__(self, enabled: bool):
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled: expected True or False, got {enabled!r}")
        self.enabled = enabled
        self._previous: list[Optional[bool]] = []

    def __enter__(self) -> "validation":
        self._previous.append(_LOCAL.override)
        _LOCAL.override = self.enabled
        return self

    def __exit__(self, *exc) -> None:
        _LOCAL.override = self._previous.pop()


def set_validation(enabled: bool) -> None:
    """Switch the value checks of every public entry point on (default) or off, process-wide (the default of
    every thread that is not inside a :class:`validation` block).

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
    """Whether value checks are switched on here: the innermost :class:`validation` block of this thread, else
    :func:`set_validation`'s process-wide setting."""
    override = _LOCAL.override
    return _GLOBAL["enabled"] if override is None else override


def checks_enabled() -> bool:
    """Whether value checks run here: :func:`validation_enabled` and not inside a :class:`trusted` block (the
    library's own internal calls on inputs it validated once)."""
    return validation_enabled() and _LOCAL.trusted_depth == 0


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
    converted = arrays.as_tensor(name, value)  # the one conversion rule (NumPy, lists, pandas)
    if like is None:
        return converted
    if isinstance(value, (list, tuple)) and converted.is_floating_point() and like.is_floating_point():
        converted = torch.as_tensor(value, dtype=like.dtype)  # Python floats are doubles: no float32 detour
    return converted.to(like.device)


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
