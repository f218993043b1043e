"""POT (Python Optimal Transport) as a reference backend: ``solver="pot"``.

Runs POT's own solvers on the problem's tensors (POT's torch backend, so ``grad="unroll"`` differentiates through
POT's iterations) and converts its scalings into otalign potentials:

* ``method="sinkhorn"`` / ``"sinkhorn_log"``: ``ot.sinkhorn`` (balanced; POT's kernel is ``exp(-C/eps)``, R = 1).
* ``method="unbalanced"``: ``ot.unbalanced.sinkhorn_unbalanced`` with ``reg_m = (rho_a, rho_b)`` and
  ``reg_type = "kl"`` for the product reference, ``"entropy"`` for the uniform one.
* ``method="emd"``: ``ot.emd``, the exact unregularised plan (returned as an explicit matrix).

Batched problems are solved one element at a time. POT's stopping rules are its own: for Sinkhorn, ``stopThr`` is
``tol / sqrt(m)`` (POT bounds the L2 norm of its column-marginal error, otalign's ``tol`` the L1 residual), for the
unbalanced solver ``stopThr = tol``. ``plan.iterations`` counts the iterations POT ran (1-based); the
non-convergence warning advises raising ``max_iter`` only when POT ran all of them.
Structural zeros (zero masses, :class:`~otalign.problem.Problem`) are removed before POT sees the problem and
padded back into the result, so they carry exactly no mass (POT's scalings would divide by them).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import Tensor

from otalign.plan import Plan
from otalign.problem import Problem
from otalign.solver import Init, Solver, import_backend

from .registry import register

METHODS = ("sinkhorn", "sinkhorn_log", "unbalanced", "emd")


@register("pot")
class POTSolver(Solver):
    """POT's solvers behind the otalign interface (module docstring).

    Options:
        method: one of ``"sinkhorn"``, ``"sinkhorn_log"``, ``"unbalanced"``, ``"emd"``; default ``None`` picks
            ``"sinkhorn_log"`` for balanced problems and ``"unbalanced"`` otherwise.
        unbalanced_method: POT's method name for unbalanced problems (default ``"sinkhorn"``).
    """

    supports = frozenset({"unroll", "implicit", "envelope", "detach", "batched", "relaxed", "uniform_reference",
                          "dense", "geometry"})
    limitations = {
        "sharded": "POT needs all rows in one process",
        "warm_start": "POT starts from its own scalings",
        "fixed_iterations": "POT's Sinkhorn updates the columns first, from its own starting scalings, so its plan after T iterations "
        "and the gauge of its potentials (which the robust term reads) are not the ones the loss defines; use POT as a "
        "reference for converged solves (otalign.solve(problem, 'pot'))",
    }

    def __init__(self, method: Optional[str] = None, unbalanced_method: str = "sinkhorn"):
        super().__init__()
        if method is not None and method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        self.method = method
        self.unbalanced_method = unbalanced_method
        if method == "emd":
            self.supports = self.supports - {"implicit"}

    def run(self, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
        ot = import_backend("ot", "pot", "pot")
        method = self.method or ("sinkhorn_log" if problem.is_balanced else "unbalanced")
        if method in ("sinkhorn", "sinkhorn_log", "emd") and not problem.is_balanced:
            raise ValueError(f"method: POT's {method!r} needs a balanced problem (rho_a = rho_b = inf)")
        cost = problem.cost
        batch = problem.batch_shape
        costs = [cost] if not batch else list(cost)
        masses_a = [problem.a] if not batch else list(problem.a)
        masses_b = [problem.b] if not batch else list(problem.b)
        outputs = [self._on_support(ot, method, problem, c, a, b, max_iter, tol)
                   for c, a, b in zip(costs, masses_a, masses_b)]
        if method == "emd":
            matrix = outputs[0][0] if not batch else torch.stack([o[0] for o in outputs])
            zeros_f = problem.a.new_zeros(problem.a.shape)
            zeros_g = problem.b.new_zeros(problem.b.shape)
            return Plan(problem, zeros_f, zeros_g, 0, True, None, "unroll", None, explicit=matrix)
        f = outputs[0][0] if not batch else torch.stack([o[0] for o in outputs])
        g = outputs[0][1] if not batch else torch.stack([o[1] for o in outputs])
        iterations = max(o[2] for o in outputs)
        error = torch.tensor([o[3] for o in outputs], dtype=problem.dtype)
        error = error[0] if not batch else error
        converged = bool((error <= tol).all()) if tol > 0 else False
        self.remedies = type(self).remedies if iterations >= max_iter else self.STOPPED_EARLY
        return Plan(problem, f, g, iterations, converged, error, "unroll")

    #: The non-convergence advice when POT stopped before ``max_iter`` (on its own criterion, not the iteration cap).
    STOPPED_EARLY = (
        ("tol", "POT stopped on its own criterion before max_iter, yet the plan's marginal residual is above tol: "
                "ask for a smaller tol, or solve with otalign's 'sinkhorn'"),
    )
    def _on_support(self, ot, method, problem, cost, a, b, max_iter, tol):
        """:meth:`_one` on the problem without its structural zeros (the rows / columns of zero mass on a side that
        is not free, or under the product reference), padded back: zero plan entries, and potentials ``-inf``
        under the uniform reference (``eps log u`` with ``u = 0``), 0 under the product one."""
        rows = _structural_support(a, problem.rho_a, problem.reference)
        cols = _structural_support(b, problem.rho_b, problem.reference)
        if rows is None and cols is None:
            return self._one(ot, method, problem, cost, a, b, max_iter, tol)
        rows = torch.arange(len(a), device=a.device) if rows is None else rows
        cols = torch.arange(len(b), device=b.device) if cols is None else cols
        out = self._one(ot, method, problem, cost[rows][:, cols], a[rows], b[cols], max_iter, tol)
        if method == "emd":
            return (_pad(_pad(out[0], rows, len(a), 0.0, 0), cols, len(b), 0.0, 1),)
        fill = 0.0 if problem.reference == "product" else -math.inf
        return (_pad(out[0], rows, len(a), fill, 0), _pad(out[1], cols, len(b), fill, 0)) + tuple(out[2:])

    def _one(self, ot, method, problem, cost, a, b, max_iter, tol):
        eps = problem.eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "emd":
                return (ot.emd(a, b, cost, numItermax=max(max_iter, 100_000)),)
            if method in ("sinkhorn", "sinkhorn_log"):
                # POT stops when the L2 norm of its column-marginal error is below stopThr; otalign's tol bounds the L1
                # residual, at most sqrt(m) times the L2 norm: tol / sqrt(m) makes POT's stop imply otalign's.
                stop = tol / math.sqrt(cost.shape[-1])
                _, log = ot.sinkhorn(a, b, cost, eps, method=method, numItermax=max_iter, stopThr=stop, log=True)
                log_u = log["log_u"] if method == "sinkhorn_log" else torch.log(log["u"])
                log_v = log["log_v"] if method == "sinkhorn_log" else torch.log(log["v"])
                f, g = eps * log_u, eps * log_v
                if problem.reference == "product":
                    f, g = f - eps * a.log(), g - eps * b.log()
                errors = log.get("err", [])
                return f, g, int(log["niter"]) + 1, _last(errors)  # POT's niter is its last loop index, 0-based
            reg_type = "kl" if problem.reference == "product" else "entropy"
            reg_m = (_pot_rho(problem.rho_a), _pot_rho(problem.rho_b))
            _, log = ot.unbalanced.sinkhorn_unbalanced(
                a, b, cost, eps, reg_m, method=self.unbalanced_method, reg_type=reg_type,
                numItermax=max_iter, stopThr=tol, log=True,
            )
            errors = log.get("err", [])
            return eps * log["logu"], eps * log["logv"], len(errors), _last(errors)


def _structural_support(mass: Tensor, rho: float, reference: str) -> Optional[Tensor]:
    """Indices of the positive masses when ``mass`` has structural zeros (:class:`~otalign.problem.Problem`), else
    ``None``. A free side (rho = 0) under the uniform reference has none: its rows carry mass whatever ``a``."""
    if rho == 0.0 and reference == "uniform":
        return None
    positive = mass > 0
    if bool(positive.all()):
        return None
    return positive.nonzero().squeeze(-1)


def _pad(x: Tensor, index: Tensor, size: int, fill: float, dim: int) -> Tensor:
    """``x`` placed at ``index`` along ``dim`` of a tensor of length ``size`` filled with ``fill`` (differentiable)."""
    shape = list(x.shape)
    shape[dim] = size
    return torch.full(shape, fill, dtype=x.dtype, device=x.device).index_copy(dim, index, x)


def _pot_rho(rho: float) -> float:
    return float("inf") if math.isinf(rho) else rho


def _last(errors) -> float:
    if not len(errors):
        return float("nan")
    last = errors[-1]
    return float(last.item() if isinstance(last, Tensor) else last)
