"""otalign: alignment as optimal transport.

Core objects: :class:`Problem` (cost, masses, eps, marginal relaxations), :func:`solve` (dispatch to an
interchangeable solver), :class:`Plan` (potentials, plan, marginals, objective), :class:`Aligner` (plan scored
against a target plan). Solvers live in :mod:`otalign.solvers`, targets in :mod:`otalign.targets`, divergences in
:mod:`otalign.divergences`, cost functions in :mod:`otalign.costs`.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

#: Public names and the module that defines each: imported on first access, so ``import otalign`` (and the
#: ``otalign --help`` command) does not import torch until a name is used.
_EXPORTS = {
    "Aligner": "aligner",
    "Alignment": "aligner",
    "ConvergenceWarning": "solver",
    "DenseCost": "geometry",
    "Geometry": "geometry",
    "GWProblem": "gromov",
    "LowRankPlan": "lowrank_plan",
    "Plan": "plan",
    "PointCloud": "geometry",
    "Problem": "problem",
    "Solver": "solver",
    "set_validation": "validation",
    "solve": "solve",
    "validation_enabled": "validation",
}
#: Subpackages reachable as attributes (``otalign.losses``...), imported on first access too.
_SUBMODULES = ("costs", "distributed", "divergences", "gromov", "losses", "metrics", "modalities", "solvers",
               "targets")


class _Package(types.ModuleType):
    """The ``otalign`` module: public names resolved lazily; the function ``otalign.solve`` is never replaced by
    the submodule ``otalign.solve`` (which the import system would otherwise set as the package's attribute)."""

    def __getattr__(self, name: str):
        if name in _EXPORTS:
            value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        elif name in _SUBMODULES:
            value = importlib.import_module(f"{__name__}.{name}")
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        if name not in ("solvers", "modalities"):  # those two stay out of the namespace until imported
            types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_EXPORTS) | set(_SUBMODULES))


sys.modules[__name__].__class__ = _Package

__all__ = [
    "Aligner",
    "Alignment",
    "ConvergenceWarning",
    "DenseCost",
    "Geometry",
    "LowRankPlan",
    "GWProblem",
    "Plan",
    "PointCloud",
    "Problem",
    "Solver",
    "costs",
    "distributed",
    "divergences",
    "gromov",
    "losses",
    "metrics",
    "solve",
    "set_validation",
    "targets",
    "validation_enabled",
]
