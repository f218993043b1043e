"""The solver interface and the differentiation modes shared by every solver."""

from __future__ import annotations

import importlib
import math
import warnings
from typing import Mapping, Optional, Union

import torch
from torch import Tensor

from .capabilities import check_supported, required
from .distributed import agree_solve
from .geometry import DenseCost, Geometry, PointCloud
from .halfstep import log_row_marginal
from .plan import Plan, certify
from .problem import Problem
from .softmin import logsumexp
from .checks import check_number, check_positive_int, validation_enabled

GRAD_MODES = ("unroll", "implicit", "envelope", "detach")
Init = Union[None, Plan, tuple[Tensor, Tensor]]


class ConvergenceWarning(UserWarning):
    """A solve stopped at ``max_iter`` before meeting its tolerance."""


class Solver:
    """Base class of every solver. Subclasses implement :meth:`run` and declare :attr:`supports`.

    ``run(problem, max_iter, tol, init)`` returns a plan computed with autograd recording whatever the solver does
    (``grad="unroll"``). :func:`run_solver` (what :func:`otalign.solve` and calling a solver do) checks the
    arguments and the declared capabilities before :meth:`run`, and measures ``converged`` on the returned plan
    after it. The gradient modes:

    * ``"unroll"``: gradients through every iteration (what GCA's fixed-iteration losses need).
    * ``"implicit"``: solve without a graph, then differentiate the fixed point (implicit function theorem);
      memory independent of the number of iterations. Only meaningful at convergence.
    * ``"envelope"``: no graph; :attr:`Plan.value` is the dual at the detached potentials, whose gradient is the
      gradient of the optimal value (Danskin). The plan matrix is then not differentiated through the solve.
    * ``"detach"``: no gradients at all.

    Subclasses override :meth:`run` and, where their plan is not a Gibbs-form :class:`Plan`, :meth:`attach` and
    :meth:`check_result`; never ``__call__`` (the checks would be bypassed: it is refused).
    """

    name: str = "solver"
    #: The capabilities this solver supports (:data:`otalign.capabilities.CAPABILITIES`). The default is the
    #: basic solve only: a dense, unbatched, balanced, single-process problem under the product reference, with
    #: gradients through the run (``"unroll"``) or none (``"detach"``).
    supports: frozenset = frozenset({"dense", "unroll", "detach"})
    #: Why a capability is missing, where the reason helps the user (``capability -> reason``).
    limitations: Mapping[str, str] = {}
    #: What the non-convergence warning suggests: ``(name, advice)`` pairs, each ``name`` an argument of
    #: :func:`otalign.solve` or :class:`Problem`, or an option of this solver's constructor (tested).
    remedies: tuple[tuple[str, str], ...] = (("max_iter", "raise max_iter"), ("eps", "use a larger eps"))

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: override run / attach / check_result, not __call__ (it runs the "
                            f"argument and capability checks every solve needs)")

    def run(self, problem: Problem, max_iter: int, tol: float, init: Init):
        raise NotImplementedError

    def residual_tolerance(self, tol: float) -> float:
        """The bound on the returned plan's marginal residuals that ``converged=True`` certifies: ``tol`` itself,
        unless the solver's ``tol`` measures something else (the low-rank solver's is a relative change of its
        objective, its marginals are held to its projection's ``inner_tol``)."""
        return tol

    def refine(self, problem: Problem, plan, max_iter: int, tol: float):
        """Continue a solve whose ``converged`` the measurement on its plan refuted, for at most ``max_iter`` more
        iterations from ``plan`` (``None``: this solver cannot; the plan is then reported as not converged)."""
        return None

    def __call__(self, problem: Problem, *, max_iter: int = 1000, tol: float = 1e-6, grad: str = "unroll",
                 init: Init = None):
        return run_solver(self, problem, max_iter=max_iter, tol=tol, grad=grad, init=init)

    def attach(self, problem: Problem, plan: Plan, grad: str) -> Plan:
        """The plan of a solve run without a graph, re-attached to ``problem`` for ``grad`` (not ``"unroll"``)."""
        f, g = plan.f.detach(), plan.g.detach()
        if grad == "detach":
            problem = problem.detach()
        elif grad == "implicit":
            from .implicit import implicit_potentials

            f, g = implicit_potentials(problem, f, g)
        return Plan(problem, f, g, plan.iterations, plan.converged, plan.error, grad, plan.iterates, plan.explicit,
                    None if plan.log_mass is None else plan.log_mass.detach(), kernel=plan.kernel)

    def check_result(self, plan) -> None:
        """Raise on a result that is not finite or overflows its dtype (with validation on)."""
        if isinstance(plan, Plan):
            _check_finite(plan)
            _check_plan_range(plan)


def run_solver(solver: Solver, problem: Problem, *, max_iter: int = 1000, tol: float = 1e-6, grad: str = "unroll",
               init: Init = None):
    """Run ``solver`` on ``problem``: check the arguments and the solver's capabilities (before any work), run,
    attach the gradient mode, check the result, and measure ``converged`` on the returned plan
    (:func:`otalign.plan.certify`); warn when the solve did not converge."""
    if not isinstance(problem, Problem):
        raise TypeError(f"problem: expected an otalign.Problem, got {type(problem).__name__}")
    if not isinstance(grad, str) or grad not in GRAD_MODES:
        raise ValueError(f"grad: expected one of {GRAD_MODES}, got {grad!r}")
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_number("tol", tol)
    check_supported(solver, required(problem, grad, init))
    # rows split across processes: every argument that must agree is agreed (the solver instance describes its
    # options) before the first collective; a no-op for a single process
    agree_solve(problem, solver, {"max_iter": max_iter, "tol": tol, "grad": grad, "init": init})
    if grad == "unroll":
        plan, refuted = _run_certified(solver, problem, max_iter, tol, init)
    else:
        with torch.no_grad():
            plan, refuted = _run_certified(solver, problem.detach(), max_iter, tol, init)
        plan = solver.attach(problem, plan, grad)
    if validation_enabled():
        solver.check_result(plan)
    if tol > 0 and not plan.converged:
        err = "n/a" if plan.error is None else f"{float(plan.error.max()):.3g}"
        advice = ", ".join(text for _, text in solver.remedies)
        if refuted:
            remedy = "solve in float64 or use a larger tol" if problem.dtype != torch.float64 else "use a larger tol"
            advice = f"the returned plan's marginal residual stays at {err} in {problem.dtype}: {remedy}; " + advice
        warnings.warn(
            f"{solver.name}: no convergence after {plan.iterations} iterations (error {err} > tol {tol:g}); {advice}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return plan


def _run_certified(solver: Solver, problem: Problem, max_iter: int, tol: float, init: Init):
    """``(plan, refuted)``: the solver's plan with ``converged`` measured on it; a refuted claim is refined once
    (:meth:`Solver.refine`) with the iterations left."""
    plan = solver.run(problem, max_iter, tol, init)
    claimed = plan.converged
    bound = solver.residual_tolerance(tol)
    plan = certify(plan, bound)
    refuted = claimed and not plan.converged
    left = max_iter - plan.iterations
    if refuted and left > 0:
        refined = solver.refine(problem, plan, left, tol)
        if refined is not None:
            claimed = refined.converged
            plan = certify(refined, bound)
            refuted = claimed and not plan.converged
    return plan, refuted


def import_backend(module: str, solver: str, extra: str):
    """Import an optional backend library (``ot``, ``geomloss``) for ``solver``, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"solver {solver!r} needs {extra}: pip install 'otalign[{extra}]'") from None


def _check_finite(plan: Plan) -> None:
    for name, x in (("f", plan.f), ("g", plan.g)):
        if torch.isnan(x).any():
            _check_cost_values(plan.problem.geometry)
            raise FloatingPointError(
                f"solver produced NaN in the potential {name}; this is a bug, please report it with the problem "
                f"({plan.problem!r})"
            )


def _check_cost_values(geometry: Geometry) -> None:
    """Raise a ``cost:`` error if the cost itself holds NaN or ``-inf`` (a user's cost callable can return them;
    cost matrices are checked when the problem is built). One pass over the cost, only after a NaN appeared."""
    with torch.no_grad():
        tensors = geometry.tensors()
        for start, stop in geometry.row_blocks():
            block = geometry.block(tensors, start, stop)
            bad = torch.isnan(block) | (block == -math.inf)
            if bool(bad.any()):
                index = bad.nonzero()[0].tolist()
                row, col = index[-2] + start, index[-1]
                kind = "NaN" if bool(torch.isnan(block).any()) else "-inf"
                raise ValueError(
                    f"cost: the cost holds {kind} (first at row {row}, column {col}); a cost function must return "
                    f"finite values (or +inf for a forbidden pair)"
                )


def _cost_lower_bound(geometry: Geometry) -> Optional[float]:
    """A lower bound of the cost known without a pass over it (``None`` if there is none)."""
    if isinstance(geometry, DenseCost):
        return min(geometry.bounds()[0], 0.0)  # forbidden entries count as 0 in the bounds
    if isinstance(geometry, PointCloud):
        return geometry.cost_function.lower_bound()
    return None


def _check_plan_range(plan: Plan) -> None:
    """Raise if the plan's total mass overflows its dtype (then ``matrix`` would hold inf and ``value`` NaN).

    Free or weakly relaxed marginals let the plan grow like ``R exp(-C / eps)``: with both sides free the optimum
    *is* ``R exp(-C/eps)``, e.g. ``e^100`` per entry for ``C = -1``, ``eps = 0.01``: finite, but not in float32.
    A bound from the potentials' maxima and the cost's minimum decides without a pass over the cost; only when it
    is inconclusive is the exact log-mass computed (one soft-min pass)."""
    if plan.explicit is not None:
        return
    p = plan.problem
    finfo = torch.finfo(p.dtype)
    limit = math.log(finfo.max) - math.log(64.0)
    if plan.log_mass is not None:
        largest = float(plan.log_mass.detach().amax())
        if largest <= limit:
            return
        _raise_overflow(p, largest)
    with torch.no_grad():
        f, g = plan.f.detach(), plan.g.detach()
        low = _cost_lower_bound(p.geometry)
        if low is not None:
            log_reference = 0.0
            if p.reference == "product":
                log_reference = float(p.log_a.detach().amax()) + float(p.log_b.detach().amax())
            bound = (float(f.amax()) + float(g.amax()) - low) / p.eps + log_reference + math.log(p.n * p.m)
            if bound <= limit:
                return
        detached = p.detach()
        log_ref_b = detached.log_reference_b()
        h = g if log_ref_b is None else g + p.eps * log_ref_b
        log_rows = log_row_marginal(detached, f, logsumexp(detached.geometry, h, p.eps, 1))
        log_mass = torch.logsumexp(log_rows, dim=-1)
        largest = float(log_mass.amax())
    if largest > limit or math.isnan(largest):
        _raise_overflow(p, largest)


def _raise_overflow(p: Problem, largest: float) -> None:
    raise FloatingPointError(
        f"the plan's total mass, about e^{largest:.4g}, overflows {p.dtype} ({p!r}): with free or weakly "
        f"relaxed marginals (rho_a={p.rho_a:g}, rho_b={p.rho_b:g}) the optimal plan grows like "
        f"R exp(-C / eps); use float64, a larger eps or rho, or a cost with a larger minimum"
    )


def initial_potentials(problem: Problem, init: Init) -> tuple[Tensor, Tensor]:
    """Zero potentials, or a warm start from a previous plan / ``(f, g)`` pair (shapes checked)."""
    shape_f = problem.batch_shape + (problem.n,)
    shape_g = problem.batch_shape + (problem.m,)
    if init is None:
        zeros = torch.zeros(shape_f, dtype=problem.dtype, device=problem.device)
        return zeros, _structural_columns(problem, torch.zeros(shape_g, dtype=problem.dtype, device=problem.device))
    if isinstance(init, Plan):
        f, g = init.f, init.g
    elif isinstance(init, (tuple, list)) and len(init) == 2:
        f, g = init
    else:
        raise TypeError(f"init: expected a Plan or a pair (f, g) of potentials, got {type(init).__name__}")
    for x in (f, g):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"init: expected floating-point tensors (f, g), got {got}")
        if x.device != problem.device:
            raise ValueError(f"init: potentials are on {x.device} but the problem is on {problem.device}")
    if tuple(f.shape) != shape_f or tuple(g.shape) != shape_g:
        raise ValueError(f"init: expected potentials of shapes {shape_f} and {shape_g}, got {tuple(f.shape)}, {tuple(g.shape)}")
    if bool(torch.isnan(f).any() or torch.isnan(g).any() or (f == math.inf).any() or (g == math.inf).any()):
        raise ValueError("init: potentials contain NaN or +inf")
    # -inf is the potential of a zero mass under the uniform reference; the solver recomputes it from the other side
    f, g = (x.detach().to(problem.dtype) for x in (f, g))
    f, g = f.masked_fill(f == -math.inf, 0.0), g.masked_fill(g == -math.inf, 0.0)
    f, g = recentre(problem, f, g)
    return f, _structural_columns(problem, g)


def _structural_columns(problem: Problem, g: Tensor) -> Tensor:
    """``g`` at ``-inf`` on the columns of zero mass under the uniform reference (their potential, ``eps log v`` with
    ``v = 0``), so that the first row half-step gives them no mass, as the problem without them would: a fixed
    number of sweeps would otherwise lend them mass. Device-side, no read."""
    if problem.reference != "uniform" or problem.rho_b == 0.0:
        return g
    return g.masked_fill(problem.b == 0, -math.inf)


def recentre(problem: Problem, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Remove the gauge of a balanced warm start: ``(f + t, g - t)`` is the same plan for any ``t``, so a start far
    out along it (``(f + 1e6, g - 1e6)``, or ``(1e30, -1e30)``) is moved back to ``max f = max g``, computed in
    float64, before the first step (the first row half-step reads only ``g``). Relaxed problems have no gauge."""
    if not problem.is_balanced:
        return f, g
    top_f, top_g = f.double().amax(-1, keepdim=True), g.double().amax(-1, keepdim=True)
    top_f = problem.geometry.reduce_rows(top_f, "max")  # every rank's rows when sharded
    shift = (top_g - top_f) / 2
    return (f.double() + shift).to(f.dtype), (g.double() - shift).to(g.dtype)
