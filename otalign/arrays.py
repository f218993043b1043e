"""One conversion rule for array-like inputs: torch tensors, NumPy arrays, lists and pandas objects alike.

A leaf helper (it imports only NumPy and torch). Every public constructor and estimator that takes data it does not
differentiate through (costs, masses, masks, targets, labels, domains, features to evaluate, samples to adapt)
converts it with :func:`as_tensor` or, for class labels, :func:`as_labels`:

* a ``torch.Tensor`` is used as given (dense, with values: not sparse, not on the ``meta`` device);
* a NumPy array or NumPy scalar, a (nested) list or tuple of numbers, a pandas ``Series`` or ``DataFrame``
  (through ``.to_numpy()``) is converted with ``torch.as_tensor``;
* anything else (strings, ``None``, dicts, ragged lists, object arrays) is refused with a ``TypeError`` that names
  the argument.

Class labels (:func:`as_labels`) may also be strings, booleans or floats: they become ``int64`` codes. Integer
labels keep their values (so ``-1`` can still mark an unlabelled sample), booleans become 0 / 1, floats holding
whole numbers become those integers, and other floats and strings become their rank among the sorted distinct
values (``["cat", "dog", "cat"] -> [0, 1, 0]``). Only equality of labels matters to targets, losses and metrics,
so every one of them reads the same labels in the same way.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

#: Types accepted besides tensors, for error messages.
ACCEPTED = "a torch.Tensor, a NumPy array, a list of numbers or a pandas Series / DataFrame"


def is_pandas(value: Any) -> bool:
    """Whether ``value`` is a pandas object with ``to_numpy`` (checked without importing pandas)."""
    return type(value).__module__.split(".")[0] == "pandas" and hasattr(value, "to_numpy")


def to_numpy(name: str, value: Any) -> Optional[np.ndarray]:
    """``value`` as a NumPy array when it is array-like but not a tensor (NumPy, pandas, list, tuple, NumPy
    scalar), else ``None``. Ragged lists raise a ``TypeError`` naming ``name``."""
    if isinstance(value, Tensor):
        return None
    if is_pandas(value):
        return np.asarray(value.to_numpy())
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, (list, tuple)):
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected {ACCEPTED}, got a {type(value).__name__} that is not a rectangular "
                            f"array") from None
        if array.dtype.kind in "US":  # NumPy would turn numbers mixed with strings into strings: refuse instead
            items = np.asarray(value, dtype=object).ravel().tolist()
            if not all(isinstance(v, (str, bytes)) for v in items):
                kinds = sorted({type(v).__name__ for v in items})
                raise TypeError(f"{name}: a {type(value).__name__} of mixed types ({', '.join(kinds)}); use one type")
        return array
    return None


def as_tensor(name: str, value: Any, dtype: Optional[torch.dtype] = None,
              device: Optional[torch.device] = None) -> Tensor:
    """``value`` as a torch tensor (module docstring's rule).

    Args:
        name: the argument's name, for errors.
        value: a tensor, NumPy array or scalar, list / tuple of numbers, pandas Series or DataFrame.
        dtype, device: where a converted (non-tensor) value goes; a tensor is returned unchanged, so that its dtype
            and device stay the caller's to check. A list of Python floats converted with a floating ``dtype``
            takes it directly (no float32 detour).

    Raises:
        TypeError: naming ``name``, for strings, objects, ragged lists and anything not array-like.

    Example::

        >>> as_tensor("a", [0.25, 0.75], dtype=torch.float64)
        tensor([0.2500, 0.7500], dtype=torch.float64)
    """
    if isinstance(value, Tensor):
        if value.is_meta:
            raise ValueError(f"{name}: is on the 'meta' device, which holds no values")
        if value.layout != torch.strided:
            raise ValueError(f"{name}: is a sparse tensor ({value.layout}); otalign needs dense ones: pass "
                             f"{name}.to_dense()")
        return value
    array = to_numpy(name, value)
    if array is None:
        raise TypeError(f"{name}: expected {ACCEPTED}, got {type(value).__name__}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{name}: expected numbers, got {_describe(value, array)}")
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array).copy()
    if isinstance(value, (list, tuple)) and dtype is not None and dtype.is_floating_point:
        return torch.as_tensor(value, dtype=dtype, device=device)
    out = torch.as_tensor(array)
    return out.to(device=device, dtype=dtype) if (dtype is not None or device is not None) else out


def label_classes(*values: Any, names: Sequence[str] = ()) -> Optional[np.ndarray]:
    """One coding for several label arrays that must share codes (source and target labels): when any of
    ``values`` (``None`` entries skipped) holds strings or non-integral floats, the sorted distinct values of all of
    them, to pass as :func:`as_labels`'s ``classes``; else ``None`` (integer codes are the labels themselves).
    ``names``: the arguments' names, for errors."""
    names = list(names) + [f"labels[{i}]" for i in range(len(names), len(values))]
    given = [(name, value) for name, value in zip(names, values) if value is not None]
    arrays = [_label_array(value, name) for name, value in given]
    if not any(_needs_coding(array) for array in arrays):
        return None
    joined = ", ".join(name for name, _ in given)
    return _sorted_unique(joined, np.concatenate([np.asarray(array, dtype=object).ravel() for array in arrays]))


def as_labels(name: str, value: Any, classes: Optional[Sequence] = None,
              device: Optional[torch.device] = None) -> Tensor:
    """Class labels as an ``int64`` tensor of codes (module docstring's rule; shape as given).

    Args:
        name: the argument's name, for errors.
        value: integer, boolean, float or string labels, in any container :func:`as_tensor` accepts (strings in
            NumPy arrays, lists or pandas objects).
        classes: the sorted values to code against (:func:`label_classes` of every array that must share codes);
            by default integers, booleans and whole floats are their own codes and other labels are coded against
            their own sorted distinct values.
        device: where converted (non-tensor) labels go; a tensor stays on its device.

    Raises:
        TypeError: naming ``name`` for values that are not labels (``None``, mixed objects).
        ValueError: naming ``name`` for NaN or infinite float labels, or labels not among ``classes``.

    Example::

        >>> as_labels("y", ["cat", "dog", "cat"])
        tensor([0, 1, 0])
    """
    if isinstance(value, Tensor) and classes is None:
        return _numeric_labels(name, as_tensor(name, value))
    array = _label_array(value, name)
    if classes is None and not _needs_coding(array):
        return _numeric_labels(name, as_tensor(name, array, device=device))
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or inf")
    known = _sorted_unique(name, np.asarray(array, dtype=object).ravel()) if classes is None else \
        np.asarray(classes, dtype=object)
    lookup = {label: code for code, label in enumerate(known.tolist())}
    flat = np.asarray(array, dtype=object).ravel().tolist()
    missing = [label for label in flat if label not in lookup]
    if missing:
        raise ValueError(f"{name}: label {missing[0]!r} is not among the classes {known.tolist()}")
    codes = torch.tensor([lookup[label] for label in flat], dtype=torch.int64).reshape(array.shape)
    return codes.to(value.device if isinstance(value, Tensor) else device)


def _label_array(value: Any, name: str = "labels") -> np.ndarray:
    if isinstance(value, Tensor):
        return as_tensor(name, value).detach().cpu().numpy()
    array = to_numpy(name, value)
    if array is None:
        raise TypeError(f"{name}: expected labels ({ACCEPTED}, of integers, booleans, floats or strings), got "
                        f"{type(value).__name__}")
    if array.dtype.kind == "c":
        raise TypeError(f"{name}: expected real labels, got dtype {array.dtype}")
    return array


def _needs_coding(array: np.ndarray) -> bool:
    """Strings (objects), or floats that are not all whole numbers."""
    if array.dtype.kind in "biu":
        return False
    if array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        return bool(finite.size == array.size and (finite != np.round(finite)).any())
    return True


def _numeric_labels(name: str, value: Tensor) -> Tensor:
    if value.is_complex():
        raise TypeError(f"{name}: expected real labels, got dtype {value.dtype}")
    if value.dtype == torch.bool or not value.is_floating_point():
        return value.to(torch.int64)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: contains NaN or inf")
    if bool((value == value.round()).all()):
        return value.to(torch.int64)
    return torch.unique(value, sorted=True, return_inverse=True)[1].reshape(value.shape)


def _sorted_unique(name: str, flat: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(sorted(set(flat.tolist())), dtype=object)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in flat.tolist()})
        raise TypeError(f"{name}: labels of mixed types ({', '.join(kinds)}) cannot be ordered; use one type") from None


def _describe(value: Any, array: np.ndarray) -> str:
    kind = "a pandas object" if is_pandas(value) else f"a {type(value).__name__}"
    return f"{kind} of dtype {array.dtype}"


__all__ = ["ACCEPTED", "as_labels", "as_tensor", "is_pandas", "label_classes", "to_numpy"]
