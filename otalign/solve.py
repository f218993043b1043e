"""``otalign.solve``: one entry point for every solver."""

from __future__ import annotations

from typing import Union

from .plan import Plan
from .problem import Problem
from .solver import Init, Solver


def solve(
    problem: Problem,
    solver: Union[str, Solver] = "sinkhorn",
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "unroll",
    init: Init = None,
    **options,
) -> Plan:
    """Solve ``problem`` with a registered solver (by name) or a :class:`Solver` instance.

    Args:
        problem: the :class:`Problem`, or a :class:`~otalign.gromov.GWProblem` (then this is
            :func:`otalign.gromov.solve_gw` and returns a :class:`~otalign.gromov.GWPlan`).
        solver: ``"sinkhorn"``, ``"unbalanced"``, ``"proximal"``, ``"geomloss"``, ``"pot"``, ``"lowrank"`` (returns a
            :class:`~otalign.LowRankPlan`; needs ``rank=``), a name registered with
            :func:`otalign.solvers.register`, or an instance.
        max_iter: iteration cap (outer steps for ``"proximal"``).
        tol: stopping tolerance (see each solver); ``0`` runs exactly ``max_iter`` iterations.
        grad: ``"unroll"`` | ``"implicit"`` | ``"envelope"`` | ``"detach"`` (see :class:`Solver`).
        init: warm start: a previous :class:`Plan` or ``(f, g)`` (for ``"lowrank"``: a previous
            :class:`~otalign.LowRankPlan` or ``(Q, R, g)``).
        **options: the solver's constructor options (only with a name).

    Example::

        >>> x, y = torch.randn(100, 3), torch.randn(80, 3)
        >>> plan = otalign.solve(otalign.Problem(torch.cdist(x, y) ** 2, eps=0.1))
        >>> plan.value, plan.marginal_error
    """
    from .gromov import GWProblem, solve_gw

    if isinstance(problem, GWProblem):  # options may include solve_gw's inner_max_iter, inner_tol, ...
        return solve_gw(problem, solver, max_iter=max_iter, tol=tol, grad=grad, init=init, **options)
    if not isinstance(problem, Problem):
        raise TypeError(f"problem: expected an otalign.Problem or GWProblem, got {type(problem).__name__}")
    if isinstance(solver, str):
        from . import solvers

        instance = solvers.get(solver, **options)
    elif isinstance(solver, Solver):
        if options:
            raise TypeError(f"options {sorted(options)}: pass options to the solver's constructor, not to solve()")
        instance = solver
    else:
        raise TypeError(f"solver: expected a solver name or a Solver instance, got {type(solver).__name__}")
    return instance(problem, max_iter=max_iter, tol=tol, grad=grad, init=init)
