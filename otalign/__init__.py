"""otalign: alignment as optimal transport.

Core objects: :class:`Problem` (cost, masses, eps, marginal relaxations), :func:`solve` (dispatch to an
interchangeable solver), :class:`Plan` (potentials, plan, marginals, objective), :class:`Aligner` (plan scored
against a target plan). Solvers live in :mod:`otalign.solvers`, targets in :mod:`otalign.targets`, divergences in
:mod:`otalign.divergences`, cost functions in :mod:`otalign.costs`.
"""

from . import costs, distributed, divergences, gromov, losses, metrics, targets
from .aligner import Aligner, Alignment
from .geometry import DenseCost, Geometry, PointCloud
from .lowrank_plan import LowRankPlan
from .gromov import GWProblem
from .plan import Plan
from .problem import Problem
from .solve import solve
from .solver import ConvergenceWarning, Solver
from .validation import set_validation, validation, validation_enabled
from ._layout import import_mapped

solvers = import_mapped("solvers")  # registers the built-in solvers (the core reaches them only via the registry)

__version__ = "0.1.0"


def __getattr__(name: str):
    """``otalign.modalities`` on first access (its plug-ins import heavy libraries only when used)."""
    if name == "modalities":
        return import_mapped(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
    "validation",
    "targets",
    "validation_enabled",
]
