"""The solver registry, as ``otalign.solvers.register`` / ``get`` / ``available`` (it lives in
:mod:`otalign.registry`, so that the core resolves solvers without importing this package)."""

from __future__ import annotations

from otalign.registry import available, register, resolve_solver, unregister


def get(name: str, **options):
    """An instance of the solver registered as ``name``, configured with ``options``."""
    return resolve_solver(name, options)


__all__ = ["register", "unregister", "get", "available"]
