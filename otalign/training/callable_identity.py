"""A stable identity of a Python callable: what it computes, not where it lives in memory.

Used to fingerprint custom target rules (``--target module:function``), so that a run resumes only with the same
target. The identity covers

* a plain function: its source (its bytecode when the source is unavailable), its default arguments, its closure
  cells, and every module-level global its code reads (names in ``co_names`` of the function and its nested code
  objects, resolved in the function's globals): values by a stable representation (tensors and NumPy arrays by
  dtype, shape and bytes), and functions of the same module recursively, by the same rule;
* a ``functools.partial``: the identity of its function, its positional and its keyword arguments;
* a callable instance: the source of its class and its ``__dict__``;
* a builtin or a function of another module: its qualified name (library code is covered by its version).

No part of the identity contains a memory address, so it is the same in every process that imports the same code.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
from typing import Any, Callable

import numpy as np
import torch

_MAX_DEPTH = 8


def callable_identity(function: Callable) -> str:
    """A 16-hex-digit hash of what ``function`` computes (see the module docstring); equal for equal code, module
    constants and arguments, different when any of them changes."""
    digest = hashlib.sha256(_describe_callable(function, set(), 0).encode())
    return digest.hexdigest()[:16]


def _describe_callable(function: Any, seen: set[int], depth: int) -> str:
    if isinstance(function, functools.partial):
        args = ",".join(_stable(a, seen, depth + 1) for a in function.args)
        keywords = ",".join(f"{k}={_stable(v, seen, depth + 1)}" for k, v in sorted(function.keywords.items()))
        return f"partial({_describe_callable(function.func, seen, depth + 1)};{args};{keywords})"
    if isinstance(function, types.MethodType):
        return f"method({_describe_callable(function.__func__, seen, depth + 1)};{_stable(function.__self__, seen, depth + 1)})"
    if isinstance(function, types.FunctionType):
        return _describe_function(function, seen, depth)
    if isinstance(function, (types.BuiltinFunctionType, type)):
        return f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"
    return f"instance({_class_source(type(function))};{_stable(vars(function) if hasattr(function, '__dict__') else {}, seen, depth + 1)})"


def _describe_function(function: types.FunctionType, seen: set[int], depth: int) -> str:
    name = f"{function.__module__}.{function.__qualname__}"
    if id(function) in seen or depth > _MAX_DEPTH:
        return f"ref({name})"
    seen.add(id(function))
    try:
        code = inspect.getsource(function)
    except (OSError, TypeError):
        code = function.__code__.co_code.hex()
    parts = [name, code, _stable(function.__defaults__, seen, depth + 1),
             _stable(function.__kwdefaults__, seen, depth + 1)]
    for cell in function.__closure__ or ():
        try:
            parts.append(_stable(cell.cell_contents, seen, depth + 1))
        except ValueError:  # an empty cell
            parts.append("<empty cell>")
    namespace = function.__globals__
    for global_name in sorted(_global_names(function.__code__)):
        if global_name in namespace:
            parts.append(f"{global_name}={_stable(namespace[global_name], seen, depth + 1, function.__module__)}")
    return "function(" + ";".join(parts) + ")"


def _global_names(code: types.CodeType) -> set[str]:
    """Names a code object (and the code objects nested in it) may read as globals or attributes."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _class_source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return f"{cls.__module__}.{cls.__qualname__}"


def _stable(value: Any, seen: set[int], depth: int, module: str = "") -> str:
    """A representation of ``value`` without memory addresses; functions of ``module`` are described in full."""
    if depth > _MAX_DEPTH:
        return f"<{type(value).__qualname__}>"
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous()
        data = hashlib.sha256(flat.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]
        return f"tensor({tuple(flat.shape)},{flat.dtype},{data})"
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return "ndarray(" + _stable(value.tolist(), seen, depth + 1) + ")"
        data = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]
        return f"ndarray({value.shape},{value.dtype},{data})"
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, (list, tuple)):
        inner = ",".join(_stable(v, seen, depth + 1, module) for v in value)
        return f"{type(value).__name__}[{inner}]"
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}{{{','.join(sorted(_stable(v, seen, depth + 1, module) for v in value))}}}"
    if isinstance(value, dict):
        items = sorted((_stable(k, seen, depth + 1), _stable(v, seen, depth + 1, module)) for k, v in value.items())
        return "dict{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, types.ModuleType):
        return f"module({value.__name__})"
    if isinstance(value, types.FunctionType):
        if value.__module__ == module:
            return _describe_function(value, seen, depth)
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (functools.partial, types.MethodType)):
        return _describe_callable(value, seen, depth)
    if isinstance(value, type):
        return f"class({value.__module__}.{value.__qualname__})" if value.__module__ != module else \
            f"class({_class_source(value)})"
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if hasattr(value, "__dict__"):
        if id(value) in seen:
            return f"ref({type(value).__qualname__})"
        seen.add(id(value))
        return f"{type(value).__module__}.{type(value).__qualname__}{_stable(vars(value), seen, depth + 1, module)}"
    text = repr(value)
    return f"<{type(value).__qualname__}>" if " at 0x" in text else text


__all__ = ["callable_identity"]
