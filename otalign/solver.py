"""The solver interface and the differentiation modes shared by every solver."""

from __future__ import annotations

import dataclasses
import importlib
import math
import warnings
from typing import Optional, Union

import torch
from torch import Tensor

from .geometry import DenseCost, Geometry, PointCloud
from .plan import Plan
from .problem import Problem
from .softmin import logsumexp
from .validation import check_number, check_positive_int, validation_enabled

GRAD_MODES = ("unroll", "implicit", "envelope", "detach")
Init = Union[None, Plan, tuple[Tensor, Tensor]]


class ConvergenceWarning(UserWarning):
    """A solve stopped at ``max_iter`` before meeting its tolerance."""


class Solver:
    """Base class of every solver. Subclasses implement :meth:`run`; ``__call__`` adds the differentiation modes.

    ``run(problem, max_iter, tol, init)`` returns a :class:`Plan` computed with autograd recording whatever the
    solver does (``grad="unroll"``). The modes:

    * ``"unroll"``: gradients through every iteration (what GCA's fixed-iteration losses need).
    * ``"implicit"``: solve without a graph, then differentiate the fixed point (implicit function theorem);
      memory independent of the number of iterations. Only meaningful at convergence.
    * ``"envelope"``: no graph; :attr:`Plan.value` is the dual at the detached potentials, whose gradient is the
      gradient of the optimal value (Danskin). The plan matrix is then not differentiated through the solve.
    * ``"detach"``: no gradients at all.
    """

    name: str = "solver"
    #: Whether the solver's fixed point is the Sinkhorn fixed point of the problem (so "implicit" applies).
    sinkhorn_fixed_point: bool = True
    #: Why the solver cannot run exactly ``max_iter`` iterations (``tol=0``) of its scheme with autograd through them
    #: on a dense cost with forbidden pairs, which is what the contrastive losses need; empty when it can.
    cannot_unroll: str = ""
    #: Whether the solver runs on rows split across processes (:mod:`otalign.distributed`): it reaches the cost only
    #: through the soft-min and the Problem / Plan reductions.
    sharded_rows: bool = True
    #: What the non-convergence warning suggests: ``(name, advice)`` pairs, each ``name`` an argument of
    #: :func:`otalign.solve` or :class:`Problem`, or an option of this solver's constructor (tested).
    remedies: tuple[tuple[str, str], ...] = (("max_iter", "raise max_iter"), ("eps", "use a larger eps"))

    def __init__(self, **options):
        if options:
            raise TypeError(f"{type(self).__name__}: unknown option(s) {sorted(options)}")

    def run(self, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
        raise NotImplementedError

    def __call__(
        self,
        problem: Problem,
        *,
        max_iter: int = 1000,
        tol: float = 1e-6,
        grad: str = "unroll",
        init: Init = None,
    ) -> Plan:
        if not isinstance(problem, Problem):
            raise TypeError(f"problem: expected an otalign.Problem, got {type(problem).__name__}")
        if not isinstance(grad, str) or grad not in GRAD_MODES:
            raise ValueError(f"grad: expected one of {GRAD_MODES}, got {grad!r}")
        max_iter = check_positive_int("max_iter", max_iter)
        tol = check_number("tol", tol)
        if problem.geometry.shards > 1 and not self.sharded_rows:
            raise ValueError(f"problem: the {self.name!r} solver needs all rows in one process; its rows are split "
                             f"across {problem.geometry.shards} ranks (use 'sinkhorn' or 'unbalanced')")
        if grad == "unroll":
            plan = self.run(problem, max_iter, tol, init)
        else:
            with torch.no_grad():
                plan = self.run(problem.detach(), max_iter, tol, init)
            plan = self._attach(problem, plan, grad)
        if validation_enabled():
            _check_finite(plan)
            _check_plan_range(plan)
        if tol > 0 and plan.converged and not self.residuals_measured():
            _confirm_convergence(plan, tol)
        if tol > 0 and not plan.converged:
            err = "n/a" if plan.error is None else f"{float(plan.error.max()):.3g}"
            advice = ", ".join(text for _, text in self.remedies)
            warnings.warn(
                f"{self.name}: no convergence after {plan.iterations} iterations (error {err} > tol {tol:g}); "
                f"{advice}",
                ConvergenceWarning,
                stacklevel=3,
            )
        return plan

    def residuals_measured(self) -> bool:
        """Whether this solver's ``converged=True`` already means both :attr:`Plan.marginal_residual` of the
        returned plan are at most ``tol`` (then :meth:`__call__` does not measure them again: two passes over the
        cost saved per solve). ``False`` unless a solver guarantees it."""
        return False

    def _attach(self, problem: Problem, plan: Plan, grad: str) -> Plan:
        f, g = plan.f.detach(), plan.g.detach()
        if grad == "detach":
            problem = problem.detach()
        elif grad == "implicit":
            if not self.sinkhorn_fixed_point:
                raise ValueError(f"grad: 'implicit' is not available for the {self.name!r} solver")
            from .implicit import implicit_potentials

            f, g = implicit_potentials(problem, f, g)
        return Plan(problem, f, g, plan.iterations, plan.converged, plan.error, grad, plan.iterates, plan.explicit,
                    None if plan.log_mass is None else plan.log_mass.detach())


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
        log_rows = detached.log_row_marginal(f, logsumexp(detached.geometry, h, p.eps, 1))
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


def _confirm_convergence(plan: Plan, tol: float) -> None:
    """Keep ``plan.converged`` only if both marginal residuals (:attr:`Plan.marginal_residual`, L1 in mass units)
    are at most ``tol``, measured on the returned plan itself; otherwise set it to ``False`` and ``error`` to the
    larger residual. Runs on detached copies, so the plan's cached marginals keep their autograd graph."""
    with torch.no_grad():
        explicit = None if plan.explicit is None else plan.explicit.detach()
        copy = dataclasses.replace(
            plan, problem=plan.problem.detach(), f=plan.f.detach(), g=plan.g.detach(), explicit=explicit,
            _marginals=None,
        )
        rows, cols = copy.marginal_residual
        error = torch.maximum(rows, cols)
    if not bool((error <= tol).all()):
        plan.converged = False
        plan.error = error


def initial_potentials(problem: Problem, init: Init) -> tuple[Tensor, Tensor]:
    """Zero potentials, or a warm start from a previous plan / ``(f, g)`` pair (shapes checked)."""
    shape_f = problem.batch_shape + (problem.n,)
    shape_g = problem.batch_shape + (problem.m,)
    if init is None:
        zeros = torch.zeros(shape_f, dtype=problem.dtype, device=problem.device)
        return zeros, torch.zeros(shape_g, dtype=problem.dtype, device=problem.device)
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
    return f.masked_fill(f == -math.inf, 0.0), g.masked_fill(g == -math.inf, 0.0)
