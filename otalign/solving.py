"""``otalign.solve`` (defined here, in ``otalign.solving``): one entry point for every solver and every problem kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union, overload

from .plan import Plan
from .problem import Problem
from .registry import resolve_solver
from .solver import Init, Solver, run_solver

if TYPE_CHECKING:
    from .gromov import GWPlan, GWProblem
    from .lowrank_plan import LowRankPlan

#: Problem kinds other than the linear :class:`Problem`: ``type -> solve function`` (GW registers its own).
_PROBLEM_KINDS: dict[type, Callable[..., Any]] = {}


def register_problem_kind(kind: type, solve_function: Callable[..., Any]) -> None:
    """Let :func:`solve` dispatch problems of type ``kind`` to ``solve_function(problem, solver, *, max_iter, tol,
    grad, init, **options)`` (how :mod:`otalign.gromov` adds GW problems without the linear core importing it)."""
    if not isinstance(kind, type) or not callable(solve_function):
        raise TypeError("kind, solve_function: expected a class and a callable")
    _PROBLEM_KINDS[kind] = solve_function


@overload
def solve(problem: "GWProblem", solver: Union[str, Solver] = ..., *, max_iter: int = ..., tol: float = ...,
          grad: str = ..., init: Any = ..., **options) -> "GWPlan": ...


@overload
def solve(problem: Problem, solver: Union[str, Solver] = ..., *, max_iter: int = ..., tol: float = ...,
          grad: str = ..., init: Init = ..., **options) -> Union[Plan, "LowRankPlan"]: ...


def solve(
    problem,
    solver: Union[str, Solver] = "sinkhorn",
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "unroll",
    init: Init = None,
    **options,
):
    """Solve ``problem`` with a registered solver (by name) or a :class:`Solver` instance.

    The solver's declared capabilities are checked before it runs (a ``ValueError`` naming ``solver`` for what it
    does not support: rows split across processes, batches, masks, relaxed marginals, a gradient mode, ...), and
    ``plan.converged`` is measured on the returned plan: both marginal residuals at most ``tol``.

    Args:
        problem: the :class:`Problem`, or a :class:`~otalign.gromov.GWProblem` (then this is
            :func:`otalign.gromov.solve_gw` and returns a :class:`~otalign.gromov.GWPlan`).
        solver: ``"sinkhorn"``, ``"unbalanced"``, ``"proximal"``, ``"geomloss"``, ``"pot"``, ``"lowrank"`` (returns a
            :class:`~otalign.LowRankPlan`; needs ``rank=``), a name registered with
            :func:`otalign.solvers.register`, or an instance.
        max_iter: iteration cap (outer steps for ``"proximal"``).
        tol: stopping tolerance on the returned plan's marginal residuals (L1, mass units); ``0`` runs exactly
            ``max_iter`` iterations and leaves ``converged=False``.
        grad: ``"unroll"`` | ``"implicit"`` | ``"envelope"`` | ``"detach"`` (see :class:`Solver`).
        init: warm start: a previous :class:`Plan` or ``(f, g)`` (for ``"lowrank"``: a previous
            :class:`~otalign.LowRankPlan` or ``(Q, R, g)``).
        **options: the solver's constructor options (only with a name).

    Example::

        >>> x, y = torch.randn(100, 3), torch.randn(80, 3)
        >>> plan = otalign.solve(otalign.Problem(torch.cdist(x, y) ** 2, eps=0.1))
        >>> plan.value, plan.marginal_error
    """
    for kind, solve_function in _PROBLEM_KINDS.items():
        if isinstance(problem, kind):
            return solve_function(problem, solver, max_iter=max_iter, tol=tol, grad=grad, init=init, **options)
    if not isinstance(problem, Problem):
        kinds = ", ".join(["otalign.Problem"] + [k.__name__ for k in _PROBLEM_KINDS])
        raise TypeError(f"problem: expected one of {kinds}, got {type(problem).__name__}")
    instance = resolve_solver(solver, options)
    return run_solver(instance, problem, max_iter=max_iter, tol=tol, grad=grad, init=init)
