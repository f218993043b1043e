"""The solver registry and the one resolver every entry point uses.

``solve``, :class:`~otalign.Aligner`, :class:`~otalign.gromov.GWAligner`, the losses, :mod:`otalign.adapt` and the
command line all turn a ``solver`` argument (a registered name, or an instance) plus options into a
:class:`~otalign.solver.Solver` through :func:`resolve_solver`, so the same mistake gives the same error everywhere:
a ``ValueError`` that names the argument (an unknown name, an unknown option, options given with an instance).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping, Optional, Type, TypeVar, Union

from ._layout import import_mapped
from .solver import Solver

_REGISTRY: dict[str, Type[Solver]] = {}
S = TypeVar("S", bound=Type[Solver])


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`Solver` subclass available to ``otalign.solve(..., solver=name)``.

    Example::

        @otalign.solvers.register("my_sinkhorn")
        class MySinkhorn(otalign.Solver):
            supports = frozenset({"batched"})
            def run(self, problem, max_iter, tol, init): ...
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")

    def decorate(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Solver)):
            raise TypeError(f"register({name!r}): expected a Solver subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"name: a solver called {name!r} is already registered ({_REGISTRY[name].__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def unregister(name: str) -> None:
    """Remove the solver registered as ``name`` (tests and notebooks that register throw-away solvers)."""
    if name not in _REGISTRY:
        raise ValueError(f"name: no solver called {name!r} is registered; available: {available()}")
    del _REGISTRY[name]


def _load_built_ins() -> None:
    """Import ``otalign.solvers`` once: its modules register the built-in solvers. The core imports no solver
    module; this is the one place where the registry asks for the package (on the first lookup)."""
    import_mapped("solvers")


def available() -> list[str]:
    """Names of the registered solvers."""
    _load_built_ins()
    return sorted(_REGISTRY)


def solver_class(name: str) -> Type[Solver]:
    """The class registered as ``name`` (a ``ValueError`` naming ``solver`` otherwise)."""
    if isinstance(name, str) and name not in _REGISTRY:
        _load_built_ins()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"solver: unknown solver {name!r}; available: {available()}")
    return _REGISTRY[name]


def solver_options(cls: Type[Solver]) -> list[str]:
    """The keyword options of ``cls``'s constructor."""
    return list(_constructor_options(cls)[0])


@functools.lru_cache(maxsize=None)
def _constructor_options(cls: Type[Solver]) -> tuple[tuple[str, ...], bool]:
    """``(keyword options, whether it takes **kwargs)`` of ``cls``'s constructor, read once per class (reading a
    signature costs more than a small solve's iteration)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    names = tuple(p.name for p in parameters
                  if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    return names, any(p.kind == p.VAR_KEYWORD for p in parameters)


def resolve_solver(
    solver: Union[str, Solver],
    options: Optional[Mapping[str, Any]] = None,
    *,
    options_name: str = "options",
) -> Solver:
    """The :class:`Solver` a ``solver`` argument names: a registered name configured with ``options``, or an
    instance (then ``options`` must be empty).

    ``options_name`` is what the caller calls its options in errors (``"options"`` for ``solve(..., **options)``,
    ``"solver_options"`` for the losses, ``"--solver-option"`` for the command line).
    """
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"{options_name}: expected a dict of the solver's options, got {type(options).__name__}")
    options = dict(options or {})
    if isinstance(solver, Solver):
        if options:
            raise ValueError(f"{options_name}: {sorted(options)} given with a solver instance; pass options to the "
                             f"instance's constructor instead")
        return solver
    if not isinstance(solver, str):
        raise TypeError(f"solver: expected a solver name or an otalign.Solver instance, got {type(solver).__name__}")
    cls = solver_class(solver)
    known, accepts_any = _constructor_options(cls)
    unknown = sorted(set(options) - set(known))
    if unknown and not accepts_any:
        raise ValueError(f"{options_name}: the {solver!r} solver has no option(s) {unknown}; its options: "
                         f"{list(known)}")
    return cls(**options)


__all__ = ["register", "unregister", "available", "solver_class", "solver_options", "resolve_solver"]
