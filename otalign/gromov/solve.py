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
from dataclasses import replace
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
#: Outer-loop schedules (see :func:`solve_gw`).
SCHEDULES = ("adaptive", "fixed")
#: Largest ``B n m`` for which the factorised path materialises the linearised cost by default.
MATERIALIZE_LIMIT = 1 << 24
#: The first linear solve's tolerance under the adaptive inner schedule (see :class:`_Schedule`).
FIRST_INNER_TOL = 1e-3
#: Under the adaptive schedule a linear solve stops at this fraction of the last plan change (so that its own error
#: does not hold the measured change up).
INNER_TOL_FRACTION = 0.1
#: Window of measured plan changes that, when it oscillates without lowering the smallest one by 1 %, halves an
#: automatic step.
STALL_PATIENCE = 20
#: Polishing solves (plan change within tol) that may miss inner_tol before the loop stops unconverged: further
#: outer steps would only continue a linear solve that inner_max_iter cannot finish.
POLISH_ATTEMPTS = 3
#: The smallest automatic step.
MIN_AUTO_STEP = 1 / 16
#: Default ``inner_tol`` floor per dtype (the linear solves' accuracy the dtype can certify in reasonable time).
INNER_TOL_FLOOR = {torch.float64: 1e-9, torch.float32: 1e-6}
GWInit = Union[None, GWPlan, Tensor]


def solve_gw(
    problem: GWProblem,
    solver: Union[str, Solver] = "sinkhorn",
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "unroll",
    init: GWInit = None,
    inner_max_iter: int = 1000,
    inner_tol: Optional[float] = None,
    check_every: int = 1,
    warm_start: bool = True,
    materialize: Optional[bool] = None,
    step: Optional[float] = None,
    schedule: str = "adaptive",
    **options,
) -> GWPlan:
    """Solve an entropic (fused) GW problem.

    Args:
        problem: the :class:`GWProblem`.
        solver: the linear solver of each outer step: a registered name (``"sinkhorn"``, ``"unbalanced"``, ...)
            or an instance; ``**options`` go to its constructor.
        max_iter: outer steps at most.
        tol: outer tolerance: stop when ``|P_k - P_{k-1}|_F <= tol`` (every batch element; POT's criterion),
            measured every ``check_every`` steps (POT: 10) starting with the first. ``0`` runs exactly ``max_iter``
            steps (and leaves ``converged=False``).
        grad: ``"unroll"`` (through every outer and inner iteration), ``"envelope"`` (gradient of
            :attr:`GWPlan.value_entropic` at the fixed point, w.r.t. the intra costs, points and ``cost_xy``),
            or ``"detach"``.
        init: a previous :class:`GWPlan` (its plan and potentials) or a starting plan ``(..., n, m)`` (POT's
            ``G0``); default ``a b^T``. Not differentiated.
        inner_max_iter: iteration cap of each linear solve.
        inner_tol: the linear solves' tolerance on the returned plan's marginal residuals (L1). Default
            ``max(tol, 1e-9)`` in float64, ``max(tol, 1e-6)`` in float32 (the outer default ``tol=1e-6`` gives
            ``1e-6``). ``0`` runs exactly ``inner_max_iter`` iterations per step.
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
            unbalanced problems. Needs a dense linearised cost. Default (``None``): automatic, see below.
        schedule: ``"adaptive"`` (the schedule below) or ``"fixed"``: every linear solve runs to ``inner_tol`` and
            the step stays at ``step`` (default 1): POT's scheme, step for step.

    The adaptive schedule (the default; the fixed points are those of POT's scheme, only the work to reach them
    changes):

    * Inner tolerance: while the plan still moves, linear solve ``k`` stops at
      ``max(inner_tol, min(1e-3, 0.1 |P_{k-1} - P_{k-2}|_F))``; once the plan change is within ``tol``, the next solve
      runs to ``inner_tol`` itself. Off when ``tol`` or ``inner_tol`` is 0.
    * Step: ``1`` for balanced problems, ``0.5`` for unbalanced ones (``step=None``, when the linearised cost is
      dense), halved down to ``1/16`` when 20 plan changes in a row oscillated (a third of them rose) without
      lowering the smallest one by 1 %; a further such window at ``1/16`` stops the loop unconverged (with a
      warning: the problem is too stiff at this eps). The step in use at the end is :attr:`GWPlan.step`. A
      given ``step`` is kept fixed.

    ``converged`` is one rule: the last measured plan change is within ``tol``, the last linear solve ran to
    ``inner_tol``, and the returned plan's marginal residual, measured on the plan (float64 sums), is within
    ``inner_tol`` (``tol`` when ``inner_tol`` is 0). When three such solves in a row stop at ``inner_max_iter``
    above ``inner_tol`` while the plan no longer moves, the loop stops there, unconverged. Warns
    :class:`otalign.ConvergenceWarning` naming the knob when the outer loop stops at ``max_iter`` above ``tol``,
    when it stalls at the smallest automatic step, or when the returned plan misses ``inner_tol`` (with how spread
    the linearised cost is against eps: entropic GW at an eps far below the cost's spread needs many linear
    iterations; scale the intra costs, e.g. divide them by their max, or raise eps).

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
        inner_tol = max(tol, INNER_TOL_FLOOR.get(problem.dtype, 1e-6))
    inner_tol = check_number("inner_tol", inner_tol)
    check_every = check_positive_int("check_every", check_every)
    if not isinstance(warm_start, bool):
        raise TypeError(f"warm_start: expected a bool, got {warm_start!r}")
    start, potentials = _initial(problem, init)
    if materialize is not None and not isinstance(materialize, bool):
        raise TypeError(f"materialize: expected None or a bool, got {materialize!r}")
    if materialize is None:
        materialize = math.prod(problem.batch_shape + (problem.n, problem.m)) <= MATERIALIZE_LIMIT
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
    adaptive = schedule == "adaptive"
    automatic_step = step is None and adaptive
    if step is None:
        step = 1.0 if problem.is_balanced or materialize is False or not adaptive else 0.5
        materialize = materialize or step < 1
    step = check_number("step", step, strict=True)
    if step > 1:
        raise ValueError(f"step: expected a number in (0, 1], got {step!r}")
    if step < 1 and materialize is False:
        raise ValueError("step: a step below 1 needs a dense linearised cost; do not pass materialize=False")
    materialize = materialize or step < 1
    automatic_step = automatic_step and materialize
    plan_schedule = _Schedule(adaptive, tol, inner_tol, step, automatic_step, check_every)
    if isinstance(init, GWPlan) and init.error is not None:
        plan_schedule.record(float(init.error.max()))  # a converged start is polished at once
    settings = (instance, max_iter, tol, inner_max_iter, inner_tol, check_every, materialize, plan_schedule)
    if grad == "unroll":
        # shifting the columns of the cost is a warm start only where the column marginal is hard
        plan = _run(problem, start, potentials, *settings, warm_init=False,
                    shift_cost=warm_start and math.isinf(problem.rho_b))
    else:
        with torch.no_grad():
            plan = _run(problem.detach(), start, potentials, *settings, warm_init=warm_start, shift_cost=False)
        if grad == "envelope":  # the values, evaluated at the detached plan, carry the problem's gradient
            plan = GWPlan(problem, plan.inner, plan.iterations, plan.converged, plan.error, grad,
                          plan.inner_iterations, Linearization(problem, materialize), plan.step)
        else:
            plan = replace(plan, grad=grad)
    if tol > 0 and not plan.converged and plan_schedule.stalled:
        warnings.warn(
            f"gromov: the plan change stalls at {float(plan.error.max()):.3g} > tol {tol:g} after {plan.iterations} "
            f"outer steps, oscillating at the smallest automatic step ({MIN_AUTO_STEP:g}); the problem is too stiff "
            f"at this eps: raise eps or scale the intra costs down, or pass step= and a larger max_iter",
            ConvergenceWarning,
            stacklevel=2,
        )
    elif tol > 0 and not plan.converged and plan.error is not None and not bool((plan.error <= tol).all()):
        warnings.warn(
            f"gromov: no convergence after {plan.iterations} outer steps (plan change {float(plan.error.max()):.3g} "
            f"> tol {tol:g}, step {plan.step:g}); raise max_iter, or raise eps",
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
            raise ValueError(f"init: expected a floating plan of shape {expected}, got {init.dtype} "
                             f"{tuple(init.shape)}")
        if not bool(torch.isfinite(init).all()) or bool((init < 0).any()):
            raise ValueError("init: the starting plan must be finite and non-negative")
        return MatrixPlan(init.detach().to(problem.dtype)), None
    raise TypeError(f"init: expected None, a GWPlan or a plan tensor (n, m), got {type(init).__name__}")


class _Schedule:
    """The outer loop's adaptive settings: the linear solves' tolerance and the mirror-descent step.

    Tolerance: while the plan still moves, a linear solve need not be more accurate than that movement, so solve
    ``k`` stops at ``max(inner_tol, min(FIRST_INNER_TOL, INNER_TOL_FRACTION change_{k-1}))`` (inexact mirror
    descent; the fixed points are unchanged). Once the plan change is within ``tol``, the next solve runs to
    ``inner_tol`` itself (a polishing step), and only a plan from such a solve can be reported converged. Off when
    ``tol`` or ``inner_tol`` is 0 (fixed iteration counts, POT's scheme).

    Step: an automatic step (``step=None``) starts at 1 for balanced problems and 0.5 for unbalanced ones and is
    halved (down to :data:`MIN_AUTO_STEP`) whenever :data:`STALL_PATIENCE` measured plan changes oscillated (a third
    of them rose) without lowering the smallest change by 1 % (the oscillation full steps can show; the fixed points
    do not depend on the step); such a window at :data:`MIN_AUTO_STEP` sets :attr:`stalled` (the loop stops).
    """

    def __init__(self, adaptive: bool, tol: float, inner_tol: float, step: float, automatic_step: bool,
                 check_every: int):
        self.tol, self.inner_tol, self.step, self.automatic_step = tol, inner_tol, step, automatic_step
        self.adaptive = adaptive and tol > 0 and inner_tol > 0
        self.patience = max(1, STALL_PATIENCE // check_every)
        self.change: Optional[float] = None
        self.best = math.inf
        self.window_best = math.inf
        self.window = 0
        self.rises = 0
        self.polish = False
        self.stalled = False  # an automatic step at MIN_AUTO_STEP still oscillating: the loop stops

    def inner_tolerance(self) -> float:
        if not self.adaptive or self.polish:
            return self.inner_tol
        loose = FIRST_INNER_TOL if self.change is None else min(FIRST_INNER_TOL, INNER_TOL_FRACTION * self.change)
        return max(self.inner_tol, loose)

    def record(self, change: float) -> None:
        """Take the plan change just measured: polish next once it is within ``tol``; halve an automatic step when
        a window of :attr:`patience` measurements oscillated (a third of them rose) without lowering the smallest
        change by 1 % (a slow but steady decrease keeps its step)."""
        self.rises += self.change is not None and change > self.change
        self.change = change
        self.polish = change <= self.tol
        self.best = min(self.best, change)
        self.window += 1
        if self.window < self.patience:
            return
        oscillating = self.best > 0.99 * self.window_best and 3 * self.rises >= self.patience
        self.window, self.window_best, self.rises = 0, self.best, 0
        if oscillating and self.automatic_step:
            if self.step > MIN_AUTO_STEP:
                self.step = max(MIN_AUTO_STEP, self.step / 2)
            else:
                self.stalled = True


def _run(problem, current, potentials, instance, max_iter, tol, inner_max_iter, inner_tol, check_every, materialize,
         schedule, warm_init, shift_cost) -> GWPlan:
    """The outer loop. ``warm_init``: start each linear solve from the previous potentials; ``shift_cost``: subtract
    the previous column potential from the cost instead (a differentiable warm start, hard columns only).

    Converged (one rule): the last measured plan change is within ``tol`` (every batch element), the last linear
    solve ran to ``inner_tol`` itself, and the returned plan's measured marginal residual is within ``inner_tol``
    (``tol`` when ``inner_tol`` is 0)."""
    objective = Linearization(problem, materialize)
    f_prev, g_prev = potentials if potentials is not None else (None, None)
    if g_prev is None:
        g_prev = problem.b.new_zeros(problem.batch_shape + (problem.m,))
    marginal_tol = inner_tol if inner_tol > 0 else tol
    inner_converged = False
    error: Optional[Tensor] = None
    converged = False
    inner_total = 0
    steps = 0
    cost = None
    strict = True
    missed_polishes = 0
    for step in range(max_iter):
        cost = objective.gradient(current)
        step_size = schedule.step
        if step_size < 1 and isinstance(current, Plan):
            # the proximal term eps (1 - s) / s KL(P | P_k), P_k solved at eps / s_prev (s_prev = s but when an
            # automatic step was just halved)
            previous_step = problem.eps / current.problem.eps
            damped = current.problem.cost - current.f.unsqueeze(-1) - current.g.unsqueeze(-2)
            cost = torch.add(cost, damped, alpha=(1.0 - step_size) * previous_step / step_size)
        shift = g_prev if shift_cost else None
        linear = Problem(inner_geometry(cost, shift), problem.a, problem.b, problem.eps / step_size, problem.rho_a,
                         problem.rho_b)
        init = (f_prev, g_prev) if (warm_init and f_prev is not None) else None
        solve_tol = schedule.inner_tolerance()
        strict = solve_tol == inner_tol
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported once, for the returned plan, below
            plan = run_solver(instance, linear, max_iter=inner_max_iter, tol=solve_tol, grad="unroll", init=init)
        if not bool(torch.isfinite(plan.mass).all()):
            raise FloatingPointError(
                f"gromov: the plan's mass overflowed at outer step {step + 1} (full mirror-descent steps can make "
                f"the mass of unbalanced problems oscillate); use step < 1 (e.g. 0.5) or a larger eps"
            )
        inner_total += plan.iterations
        inner_converged = plan.converged
        if shift_cost:
            unshifted = linear.with_tensors((cost,) if isinstance(cost, Tensor) else cost.tensors(), linear.a, linear.b)
            plan = Plan(unshifted, plan.f, plan.g + shift, plan.iterations, plan.converged, plan.error, "unroll")
        steps = step + 1
        if tol > 0 and step % check_every == 0:
            error = plan_change(plan, current, problem.n, problem.m)
            schedule.record(float(error.max()))
            if not bool((error <= tol).all()):
                missed_polishes = 0
            elif strict:
                converged = _meets_marginals(plan, inner_converged, inner_tol, tol)
                missed_polishes = 0 if converged else missed_polishes + 1
        current, f_prev, g_prev = plan, plan.f, plan.g
        if converged or missed_polishes >= POLISH_ATTEMPTS or schedule.stalled:
            break
    missed = strict and marginal_tol > 0 and isinstance(current, Plan)
    if missed and not _meets_marginals(current, inner_converged, inner_tol, tol):
        warnings.warn(
            f"gromov: the returned plan's marginal residual is {float(current.measured_residual().max()):.3g} > "
            f"inner_tol {marginal_tol:g} (its linear solve stopped at inner_max_iter={inner_max_iter}"
            f"{_conditioning(cost, current.problem.eps)}); raise inner_max_iter, or raise eps / scale the "
            f"intra costs down",
            ConvergenceWarning,
            stacklevel=3,
        )
    return GWPlan(problem, current, steps, converged, error, "unroll", inner_total, objective, schedule.step)


def _meets_marginals(plan: Plan, inner_converged: bool, inner_tol: float, tol: float) -> bool:
    """Whether a linear solve's plan meets the marginals: its certified flag when it ran to ``inner_tol`` (measured
    on its plan by :func:`otalign.solver.run_solver`), else its measured residual against ``tol``."""
    if inner_tol > 0:
        return inner_converged
    return tol > 0 and bool((plan.measured_residual() <= tol).all())


def _conditioning(cost, eps: float) -> str:
    """``"; the linearised cost spreads over S x eps"`` for a dense linearised cost (how hard its linear solves are:
    Sinkhorn needs of the order of S iterations per digit of accuracy), else ``""``."""
    if not isinstance(cost, Tensor):
        return ""
    cost = cost.detach()
    spread = float((cost.amax((-1, -2)) - cost.amin((-1, -2))).max()) / eps
    return f"; the linearised cost spreads over {spread:.3g} x eps"


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


__all__ = ["solve_gw", "plan_change", "GW_GRAD_MODES", "SCHEDULES"]
