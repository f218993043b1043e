"""The solver interface and the differentiation modes shared by every solver."""

from __future__ import annotations

import importlib
import warnings
from typing import Union

import torch
from torch import Tensor

from .plan import Plan
from .problem import Problem
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
        if tol > 0 and not plan.converged:
            err = "n/a" if plan.error is None else f"{float(plan.error.max()):.3g}"
            warnings.warn(
                f"{self.name}: no convergence after {plan.iterations} iterations (error {err} > tol {tol:g}); "
                f"raise max_iter, use eps_scaling, or a larger eps",
                ConvergenceWarning,
                stacklevel=3,
            )
        return plan

    def _attach(self, problem: Problem, plan: Plan, grad: str) -> Plan:
        f, g = plan.f.detach(), plan.g.detach()
        if grad == "detach":
            problem = problem.detach()
        elif grad == "implicit":
            if not self.sinkhorn_fixed_point:
                raise ValueError(f"grad: 'implicit' is not available for the {self.name!r} solver")
            from .implicit import implicit_potentials

            f, g = implicit_potentials(problem, f, g)
        return Plan(problem, f, g, plan.iterations, plan.converged, plan.error, grad, plan.iterates, plan.explicit)


def import_backend(module: str, solver: str, extra: str):
    """Import an optional backend library (``ot``, ``geomloss``) for ``solver``, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"solver {solver!r} needs {extra}: pip install 'otalign[{extra}]'") from None


def _check_finite(plan: Plan) -> None:
    for name, x in (("f", plan.f), ("g", plan.g)):
        if torch.isnan(x).any():
            raise FloatingPointError(
                f"solver produced NaN in the potential {name}; this is a bug, please report it with the problem "
                f"({plan.problem!r})"
            )


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
    if not (bool(torch.isfinite(f).all()) and bool(torch.isfinite(g).all())):
        raise ValueError("init: potentials contain NaN or inf")
    return f.detach().to(problem.dtype), g.detach().to(problem.dtype)
