"""Interchangeable OT solvers, installed as ``otalign.solvers``.

``"sinkhorn"`` (log-domain, balanced / semi-relaxed / unbalanced, batched), ``"unbalanced"`` (translation-invariant
Sinkhorn for finite rho), ``"proximal"`` (proximal-point multistep, IPOT-style), ``"geomloss"`` and ``"pot"``
(external backends, imported when used), ``"lowrank"`` (low-rank Sinkhorn: factored plans for very large n, balanced),
``"exact"`` (network simplex through POT's compiled ``ot.emd``; balanced).
Add your own with :func:`register`.
"""

if __name__ == "solvers":  # imported from a checkout's root as a top-level package: a second, separate registry
    raise ImportError("solvers/ is installed as otalign.solvers: `import otalign` (from a checkout, `pip install -e .` or "
                      "PYTHONPATH=.) and use otalign.solvers")

from .registry import available, get, register, unregister
from .sinkhorn import Sinkhorn
from .unbalanced import TranslationInvariantSinkhorn
from .proximal import ProximalPoint
from .pot_backend import POTSolver
from .geomloss_backend import GeomLossSolver
from .lowrank import LowRankSinkhorn
from .exact import ExactSolver

__all__ = [
    "register",
    "unregister",
    "get",
    "available",
    "Sinkhorn",
    "TranslationInvariantSinkhorn",
    "ProximalPoint",
    "POTSolver",
    "GeomLossSolver",
    "LowRankSinkhorn",
    "ExactSolver",
]
