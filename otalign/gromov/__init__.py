"""Entropic Gromov-Wasserstein and fused GW on otalign's linear solvers.

:class:`GWProblem` (two intra-domain geometries, masses, eps, optional cross cost), :func:`solve_gw` (mirror
descent, each step a linear entropic problem solved by a registered solver; also reached through
``otalign.solve(gw_problem, ...)``), :class:`GWPlan` (plan, marginals, GW / FGW values), :class:`GWAligner`
(a GW plan scored against a target plan) and :class:`LowRankCost` (the factorised cost of point-cloud problems).
"""

from .aligner import GWAligner
from .geometry import LowRankCost
from .plan import GWPlan
from .problem import LOSSES, GWProblem
from .solve import GW_GRAD_MODES, solve_gw
from ..solving import register_problem_kind

register_problem_kind(GWProblem, solve_gw)

__all__ = ["GWAligner", "GWPlan", "GWProblem", "GW_GRAD_MODES", "LOSSES", "LowRankCost", "solve_gw"]
