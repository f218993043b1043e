"""geomloss as a backend for point clouds: ``solver="geomloss"``.

Calls ``geomloss.SamplesLoss("sinkhorn", potentials=True, debias=False)`` and rebuilds an otalign
:class:`~otalign.plan.Plan` from the returned dual potentials (geomloss's plan is
``a_i b_j exp((F_i + G_j - C_ij) / eps)``: the product reference). geomloss anneals eps itself (``scaling``) and
ends with an extrapolation step, so ``max_iter`` and ``tol`` do not apply; the plan's ``iterations`` is the length
of its schedule.

Conventions: cost ``"half_sqeuclidean"`` is geomloss's ``p=2`` (``|x - y|^2 / 2``), ``"euclidean"`` its ``p=1``;
``blur = eps^(1/p)``; a finite ``rho_a = rho_b`` is ``reach = rho^(1/p)``.

geomloss runs a fixed schedule and reports nothing about convergence, so the marginals of the rebuilt plan are
measured (:attr:`Plan.marginal_residual`, one soft-min pass per side): ``converged`` is whether both are at most
``tol``, ``error`` the larger one (at the default ``scaling=0.5`` the L1 marginal error is typically 0.1-0.3, so
expect a warning unless ``scaling`` is close to 1 or ``tol`` is loose). Backends: ``"tensorized"``,
``"online"`` (needs pykeops), ``"multiscale"`` (pykeops), or ``"auto"`` (geomloss's choice). A batch is solved one
element at a time (geomloss's schedule starts from the diameter of all the points it is given), so each element's
plan is the one it gets alone; for the same reason points of zero mass are left out of geomloss's input.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from otalign.costs import Euclidean
from otalign.geometry import PointCloud
from otalign.plan import Plan
from otalign.problem import Problem
from otalign.solver import Init, Solver, import_backend

from .registry import register

@register("geomloss")
class GeomLossSolver(Solver):
    """geomloss's Sinkhorn on a :class:`~otalign.geometry.PointCloud` problem (module docstring).

    Options:
        scaling: geomloss's annealing ratio (default 0.5; closer to 1 is more accurate and slower).
        backend: ``"tensorized"`` (default), ``"online"``, ``"multiscale"`` or ``"auto"``.
    """

    supports = frozenset({"unroll", "implicit", "envelope", "detach", "batched", "relaxed", "geometry"})
    limitations = {
        "sharded": "geomloss needs all rows in one process",
        "dense": "geomloss solves point clouds (PointCloud with cost 'half_sqeuclidean' or 'euclidean')",
        "uniform_reference": "geomloss uses the product reference",
        "warm_start": "geomloss anneals eps from its own start",
        "fixed_iterations": "geomloss anneals eps on its own schedule (max_iter does not apply, so there are no iterates to unroll) and "
        "needs point clouds, while a contrastive loss solves a dense cost with excluded self-pairs",
    }
    remedies = (
        ("scaling", "raise the solver option scaling towards 1 (e.g. 0.9)"),
        ("eps", "use a larger eps"),
    )

    def __init__(self, scaling: float = 0.5, backend: str = "tensorized"):
        super().__init__()
        self.scaling = scaling
        self.backend = backend

    def run(self, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
        geomloss = import_backend("geomloss", "geomloss", "geomloss")
        geometry = problem.geometry
        p = _power(geometry)
        if p is None:
            raise ValueError(
                "cost: the 'geomloss' solver needs a PointCloud with cost 'half_sqeuclidean' (p=2) or 'euclidean' (p=1)"
            )
        if problem.rho_a != problem.rho_b or problem.rho_a == 0:
            raise ValueError("rho_a, rho_b: geomloss supports equal, positive relaxations only")
        reach = None if math.isinf(problem.rho_a) else problem.rho_a ** (1 / p)
        loss = geomloss.SamplesLoss(
            "sinkhorn", p=p, blur=problem.eps ** (1 / p), reach=reach, scaling=self.scaling, debias=False,
            potentials=True, backend=self.backend,
        )
        if problem.batch_shape:  # geomloss anneals from the diameter of the whole batch: one element at a time
            solved = [self._one(loss, problem.a[i], geometry.x[i], problem.b[i], geometry.y[i], problem.eps, p)
                      for i in range(problem.batch_shape[0])]
            f, g = torch.stack([s[0] for s in solved]), torch.stack([s[1] for s in solved])
            steps = max(s[2] for s in solved)
        else:
            f, g, steps = self._one(loss, problem.a, geometry.x, problem.b, geometry.y, problem.eps, p)
        with torch.no_grad():
            measured = Plan(problem.detach(), f.detach(), g.detach(), steps, False)
            error = torch.maximum(*measured.marginal_residual)
        return Plan(problem, f, g, steps, tol > 0 and bool((error <= tol).all()), error, "unroll")

    def _one(self, loss, a, x, b, y, eps: float, p: int):
        """``(f (n,), g (m,), schedule length)`` of one problem, solved on its support: points of zero mass are
        structural zeros (:class:`~otalign.problem.Problem`) but would widen geomloss's diameter, hence its
        schedule; their potentials are 0 (the product reference gives them no mass)."""
        rows, cols = (mass > 0 for mass in (a, b))
        whole = bool(rows.all()) and bool(cols.all())
        if not whole:
            a, x, b, y = a[rows], x[rows], b[cols], y[cols]
        f, g = loss(a, x, b, y)
        f, g = f.reshape(a.shape), g.reshape(b.shape)  # geomloss returns (1, n) for unbatched input
        steps = _schedule_length(x, y, eps, p, self.scaling)
        if whole:
            return f, g, steps
        return (f.new_zeros(rows.shape).masked_scatter(rows, f), g.new_zeros(cols.shape).masked_scatter(cols, g),
                steps)


def _power(geometry) -> Optional[int]:
    """geomloss's ``p`` for a point cloud whose cost is ``|x - y|^p / p`` (p = 1 or 2), else ``None``."""
    if not isinstance(geometry, PointCloud):
        return None
    cost = geometry.cost_function
    if isinstance(cost, Euclidean):
        return 1
    return 2 if cost.squared_distance_scale == 0.5 else None


def _schedule_length(x: torch.Tensor, y: torch.Tensor, eps: float, p: int, scaling: float) -> int:
    with torch.no_grad():
        points = torch.cat([x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])])
        diameter = (points.max(0).values - points.min(0).values).norm().item()
    blur = eps ** (1 / p)
    return max(1, math.ceil(math.log(max(diameter, blur) / blur) / -math.log(scaling))) + 2
