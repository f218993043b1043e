"""otalign: alignment as optimal transport.

Core objects: :class:`Problem` (cost, masses, eps, marginal relaxations), :func:`solve` (dispatch to an
interchangeable solver), :class:`Plan` (potentials, plan, marginals, objective), :class:`Aligner` (plan scored
against a target plan). Solvers live in :mod:`otalign.solvers`, targets in :mod:`otalign.targets`, divergences in
:mod:`otalign.divergences`, cost functions in :mod:`otalign.costs`.

Names are loaded on first use (``import otalign`` imports nothing heavy, so ``otalign --help`` starts without
torch); the built-in solvers register themselves the first time the registry is asked for one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "Aligner": "aligner", "Alignment": "aligner",
    "DenseCost": "geometry", "Geometry": "geometry", "PointCloud": "geometry",
    "LowRankPlan": "lowrank_plan",
    "GWProblem": "gromov",
    "Plan": "plan",
    "Problem": "problem",
    "solve": "solving",
    "ConvergenceWarning": "solver", "Solver": "solver",
    "set_validation": "checks", "validation": "checks", "validation_enabled": "checks",
    "barycenter": "barycenters", "free_support_barycenter": "free_support", "wasserstein_1d": "oned",
    "sliced_wasserstein": "sliced", "max_sliced_wasserstein": "sliced",
    "sinkhorn_divergence": "measures",
}
#: Subpackages and modules reachable as attributes.
_MODULES = ("checks", "costs", "distributed", "gaussian", "barycenters", "free_support", "oned", "sliced", "measures", "divergences", "gromov", "losses", "metrics", "targets", "adapt", "capabilities",
            "registry", "arrays", "plan", "problem", "geometry", "softmin", "halfstep")
#: Folders of the checkout installed under this package (:func:`otalign._layout.import_mapped`).
_MAPPED = ("solvers", "modalities")

if TYPE_CHECKING:
    from . import costs, distributed, divergences, gaussian, gromov, losses, metrics, targets  # noqa: F401
    from .barycenters import barycenter  # noqa: F401
    from .free_support import free_support_barycenter  # noqa: F401
    from .oned import wasserstein_1d  # noqa: F401
    from .sliced import max_sliced_wasserstein, sliced_wasserstein  # noqa: F401
    from .aligner import Aligner, Alignment  # noqa: F401
    from .geometry import DenseCost, Geometry, PointCloud  # noqa: F401
    from .gromov import GWProblem  # noqa: F401
    from .lowrank_plan import LowRankPlan  # noqa: F401
    from .measures import sinkhorn_divergence  # noqa: F401
    from .plan import Plan  # noqa: F401
    from .problem import Problem  # noqa: F401
    from .solver import ConvergenceWarning, Solver  # noqa: F401
    from .solving import solve  # noqa: F401
    from .checks import set_validation, validation, validation_enabled  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _MAPPED:
        from ._layout import import_mapped

        value = import_mapped(name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_MODULES) | set(_MAPPED))


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
    "solvers",
    "set_validation",
    "targets",
    "validation",
    "validation_enabled",
    "wasserstein_1d",
    "sliced_wasserstein",
    "max_sliced_wasserstein",
    "barycenter",
    "free_support_barycenter",
    "gaussian",
    "sinkhorn_divergence",
]
