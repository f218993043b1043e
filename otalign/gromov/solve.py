"""The outer loop: entropic GW / FGW by mirror descent over linear entropic OT problems.

Each outer step linearises the objective at the current plan and solves the linear entropic problem

    P_{k+1} = argmin_P <grad F(P_k), P> + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)

with one of otalign's linear solvers (Peyre, Cuturi, Solomon 2016; POT's ``solver="PGD"``: a mirror-descent step
of size ``1 / eps``), starting from ``P_0 = a b^T``. Its fixed points are the stationary points of
``F(P) + eps KL(P | a b^T) + ...`` (:attr:`GWPlan.value_entropic`). Each linear solve starts from the previous
step's potentials.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Union

import torch
from torch import Tensor

from ..geometry import BLOCK_ELEMENTS
from ..plan import Plan
from ..problem import Problem
from ..registry import resolve_solver
from ..solver import ConvergenceWarning, Solver, run_solver
from ..checks import check_number, check_positive_int
from .start import AnyPlan, MatrixPlan, ProductPlan, plan_rows
from .linearization import Linearization, inner_geometry
from .plan import GWPlan
from .problem import GWProblem

GW_GRAD_MODES = ("unroll", "envelope", "detach")
#: Largest ``B n m`` for which the factorised path materialises the linearised cost by default.
MATERIALIZE_LIMIT = 1 << 24
GWInit = Union[None, GWPlan, Tensor]


def solve_gw(
    problem: GWProblem,
    solver: Union[str, Solver] = "sinkhorn",
    *,
    max_iter: int = 1000,
    tol: float = 1e-9,
    grad: str = "unroll",
    init: GWInit = None,
    inner_max_iter: int = 1000,
    inner_tol: Optional[float] = None,
    check_every: int = 1,
    warm_start: bool = True,
    materialize: Optional[bool] = None,
    step: float = 1.0,
    **options,
) -> GWPlan:
    """Solve an entropic (fused) GW problem.

    Args:
        problem: the :class:`GWProblem`.
        solver: the linear solver of each outer step: a registered name (``"sinkhorn"``, ``"unbalanced"``, ...)
            or an instance; ``**options`` go to its constructor.
        max_iter: outer steps at most.
        tol: stop when ``|P_k - P_{k-1}|_F <= tol`` (every batch element; POT's criterion), measured every
            ``check_every`` steps (POT: 10) starting with the first. ``0`` runs exactly ``max_iter`` steps.
        grad: ``"unroll"`` (through every outer and inner iteration), ``"envelope"`` (gradient of
            :attr:`GWPlan.value_entropic` at the fixed point, w.r.t. the intra costs, points and ``cost_xy``),
            or ``"detach"``.
        init: a previous :class:`GWPlan` (its plan and potentials) or a starting plan ``(..., n, m)`` (POT's
            ``G0``); default ``a b^T``. Not differentiated.
        inner_max_iter, inner_tol: iteration cap and tolerance of each linear solve (see the solver; default
            ``inner_tol``: 1e-9 in float64, 1e-6 otherwise; ``0`` = exactly ``inner_max_iter`` iterations).
        warm_start: start each linear solve from the previous potentials. With ``grad="unroll"`` the previous
            column potential is subtracted from the cost instead, so that the warm start is differentiated too;
            that is only a warm start when the column marginal is hard, so with a finite ``rho_b`` unrolled solves
            start cold.
        materialize: on the factorised point-cloud path, whether each step's linearised cost is formed as an
            ``n x m`` matrix (faster linear solves: the kernel-domain loop applies) or kept as a
            :class:`LowRankCost` (``O((n + m) d)`` memory; the default Sinkhorn still holds an ``n x m`` absorbed
            kernel in solves without a gradient while ``B n m <= 2^24``, see :mod:`otalign.softmin.absorbed`; pass
            ``solver=Sinkhorn(kernel="blocked")`` to keep nothing of that size). Default: materialise when
            ``B n m <= 2^24``.
        step: mirror-descent step in (0, 1]; ``1`` is POT's PGD step. A smaller step adds the proximal term
            ``eps (1 - step) / step KL(P | P_k)``: each linear problem then has entropic strength ``eps / step``
            and the cost ``G(P_k) + (1 - step) (G~_{k-1} - f_{k-1} - g_{k-1})`` (``G~`` the previous step's cost);
            the fixed points are the same. It damps the mass oscillations that full steps can show on
            unbalanced problems. Needs a dense linearised cost (``materialize`` is then implied).

    Warns :class:`otalign.ConvergenceWarning` when the outer loop stops at ``max_iter`` above ``tol``, or when
    the last linear solve did not meet ``inner_tol``.

    Example::

        >>> problem = otalign.GWProblem(torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2, eps=5e-3)
        >>> plan = otalign.gromov.solve_gw(problem, max_iter=50)
        >>> plan.matrix, plan.value, plan.iterations
    """
    if not isinstance(problem, GWProblem):
        raise TypeError(f"problem: expected an otalign.GWProblem, got {type(problem).__name__}")
    instance = _solver(solver, options)
    if not isinstance(grad, str) or grad not in GW_GRAD_MODES:
        raise ValueError(f"grad: expected one of {GW_GRAD_MODES} for a GW problem, got {grad!r}")
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_number("tol", tol)
    inner_max_iter = check_positive_int("inner_max_iter", inner_max_iter)
    if inner_tol is None:
        inner_tol = 1e-9 if problem.dtype == torch.float64 else 1e-6
    inner_tol = check_number("inner_tol", inner_tol)
    check_every = check_positive_int("check_every", check_every)
    if not isinstance(warm_start, bool):
        raise TypeError(f"warm_start: expected a bool, got {warm_start!r}")
    start, potentials = _initial(problem, init)
    if materialize is not None and not isinstance(materialize, bool):
        raise TypeError(f"materialize: expected None or a bool, got {materialize!r}")
    if materialize is None:
        materialize = math.prod(problem.batch_shape + (problem.n, problem.m)) <= MATERIALIZE_LIMIT
    step = check_number("step", step, strict=True)
    if step > 1:
        raise ValueError(f"step: expected a number in (0, 1], got {step!r}")
    if step < 1 and materialize is False:
        raise ValueError("step: a step below 1 needs a dense linearised cost; do not pass materialize=False")
    materialize = materialize or step < 1
    settings = (instance, max_iter, tol, inner_max_iter, inner_tol, check_every, materialize, step)
    if grad == "unroll":
        # shifting the columns of the cost is a warm start only where the column marginal is hard
        plan = _run(problem, start, potentials, *settings, warm_init=False,
                    shift_cost=warm_start and math.isinf(problem.rho_b))
    else:
        with torch.no_grad():
            plan = _run(problem.detach(), start, potentials, *settings, warm_init=warm_start, shift_cost=False)
        attached = problem if grad == "envelope" else problem.detach()
        plan = GWPlan(attached, plan.inner, plan.iterations, plan.converged, plan.error, grad,
                      plan.inner_iterations, Linearization(attached, materialize))
    if tol > 0 and not plan.converged:
        warnings.warn(
            f"gromov: no convergence after {plan.iterations} outer steps (plan change {float(plan.error.max()):.3g} "
            f"> tol {tol:g}); raise max_iter or eps",
            ConvergenceWarning,
            stacklevel=2,
        )
    return plan


def _solver(solver, options) -> Solver:
    return resolve_solver(solver, options)


def _initial(problem: GWProblem, init: GWInit) -> tuple[AnyPlan, Optional[tuple[Tensor, Tensor]]]:
    if init is None:
        return ProductPlan(problem.a.detach(), problem.b.detach()), None
    if isinstance(init, GWPlan):
        inner = init.inner
        f, g = inner.f.detach(), inner.g.detach()
        if f.shape != problem.a.shape or g.shape != problem.b.shape:
            raise ValueError(f"init: the plan's potentials have shapes {tuple(f.shape)}, {tuple(g.shape)}, expected "
                             f"{tuple(problem.a.shape)}, {tuple(problem.b.shape)}")
        detached = Plan(inner.problem.detach(), f, g, inner.iterations, inner.converged, None, "detach")
        return detached, (f, g)
    if isinstance(init, Tensor):
        expected = problem.batch_shape + (problem.n, problem.m)
        if tuple(init.shape) != expected or not init.is_floating_point():
            raise ValueError(f"init: expected a floating plan of shape {expected}, got {init.dtype} {tuple(init.shape)}")
        if not bool(torch.isfinite(init).all()) or bool((init < 0).any()):
            raise ValueError("init: the starting plan must be finite and non-negative")
        return MatrixPlan(init.detach().to(problem.dtype)), None
    raise TypeError(f"init: expected None, a GWPlan or a plan tensor (n, m), got {type(init).__name__}")


def _run(problem, current, potentials, instance, max_iter, tol, inner_max_iter, inner_tol, check_every, materialize,
         step_size, warm_init, shift_cost) -> GWPlan:
    """The outer loop. ``warm_init``: start each linear solve from the previous potentials; ``shift_cost``: subtract
    the previous column potential from the cost instead (a differentiable warm start, hard columns only)."""
    objective = Linearization(problem, materialize)
    f_prev, g_prev = potentials if potentials is not None else (None, None)
    if g_prev is None:
        g_prev = problem.b.new_zeros(problem.batch_shape + (problem.m,))
    error: Optional[Tensor] = None
    converged = False
    inner_total = 0
    inner_missed = False
    steps = 0
    for step in range(max_iter):
        cost = objective.gradient(current)
        if step_size < 1 and isinstance(current, Plan):
            damped = current.problem.cost - current.f.unsqueeze(-1) - current.g.unsqueeze(-2)
            cost = torch.add(cost, damped, alpha=1.0 - step_size)
        shift = g_prev if shift_cost else None
        linear = Problem(inner_geometry(cost, shift), problem.a, problem.b, problem.eps / step_size, problem.rho_a,
                         problem.rho_b)
        init = (f_prev, g_prev) if (warm_init and f_prev is not None) else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported once, for the last step, below
            plan = run_solver(instance, linear, max_iter=inner_max_iter, tol=inner_tol, grad="unroll", init=init)
        inner_missed = inner_tol > 0 and not plan.converged
        if not bool(torch.isfinite(plan.mass).all()):
            raise FloatingPointError(
                f"gromov: the plan's mass overflowed at outer step {step + 1} (full mirror-descent steps can make "
                f"the mass of unbalanced problems oscillate); use step < 1 (e.g. 0.5) or a larger eps"
            )
        inner_total += plan.iterations
        if shift_cost:
            unshifted = linear.with_tensors((cost,) if isinstance(cost, Tensor) else cost.tensors(), linear.a, linear.b)
            plan = Plan(unshifted, plan.f, plan.g + shift, plan.iterations, plan.converged, plan.error, "unroll")
        steps = step + 1
        if tol > 0 and step % check_every == 0:
            error = plan_change(plan, current, problem.n, problem.m)
            if bool((error <= tol).all()):
                converged = True
        current, f_prev, g_prev = plan, plan.f, plan.g
        if converged:
            break
    if inner_missed:
        warnings.warn(
            f"gromov: the last linear solve stopped at inner_max_iter={inner_max_iter} above inner_tol {inner_tol:g}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return GWPlan(problem, current, steps, converged, error, "unroll", inner_total, objective)


def plan_change(new: AnyPlan, old: AnyPlan, n: int, m: int) -> Tensor:
    """``|P_new - P_old|_F``, ``(...,)``, computed in blocks of rows (no ``n x m`` temporary for lazy plans)."""
    with torch.no_grad():
        rows = max(1, (4 * BLOCK_ELEMENTS) // max(1, m))
        total = None
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            part = (plan_rows(new, start, stop) - plan_rows(old, start, stop)).square().sum((-1, -2))
            total = part if total is None else total + part
        return total.sqrt()


__all__ = ["solve_gw", "plan_change", "GW_GRAD_MODES"]
