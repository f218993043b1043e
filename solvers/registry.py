"""Solver registry: names -> :class:`~otalign.solver.Solver` classes."""

from __future__ import annotations

from typing import Callable, Type, TypeVar

from otalign.solver import Solver

_REGISTRY: dict[str, Type[Solver]] = {}
S = TypeVar("S", bound=Type[Solver])


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`Solver` subclass available to ``otalign.solve(..., solver=name)``.

    Example::

        @otalign.solvers.register("my_sinkhorn")
        class MySinkhorn(otalign.Solver):
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


def get(name: str, **options) -> Solver:
    """An instance of the solver registered as ``name``, configured with ``options``."""
    if name not in _REGISTRY:
        raise ValueError(f"solver: unknown solver {name!r}; available: {available()}")
    return _REGISTRY[name](**options)


def available() -> list[str]:
    """Names of the registered solvers."""
    return sorted(_REGISTRY)
