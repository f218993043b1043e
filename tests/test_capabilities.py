"""Every registered solver against every capability: it either serves a problem that needs the capability (and the
result is the one a simpler route gives) or refuses it before any work, with the same error for every solver.
Rows split across processes are covered on two gloo processes in test_distributed_sharded.py."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import otalign
from otalign import Problem, solve
from otalign.capabilities import CAPABILITIES, check_supported
from otalign.registry import available, solver_class

#: Options a solver needs to be built at all.
OPTIONS = {"lowrank": {"rank": 2}}
#: The solvers' own stopping rules reach these tolerances on the small problems below.
TOL = 1e-7
#: Iteration caps that keep the slow-converging solvers (outer steps, mirror-descent steps) to a second or so.
MAX_ITER = {"proximal": 40, "lowrank": 20}


def _clouds(seed: int = 0, n: int = 7, m: int = 6, lead=()):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(lead + (n, 2), generator=gen, dtype=torch.float64)
    y = torch.randn(lead + (m, 2), generator=gen, dtype=torch.float64)
    return x, y


def _base(structured: bool = True, **changes) -> Problem:
    """A small problem every solver can read: half squared-Euclidean point clouds (geomloss's p = 2) or their
    dense matrix."""
    x, y = _clouds()
    cost = otalign.PointCloud(x, y, "half_sqeuclidean") if structured else otalign.costs.half_sqeuclidean(x, y)
    return Problem(cost, eps=0.5, **changes)


def _needs_structure(name: str) -> bool:
    return "dense" not in solver_class(name).supports


def case(capability: str, name: str):
    """``(problem, solve keyword arguments)`` needing ``capability`` (and otherwise only what ``name`` supports)."""
    structured = _needs_structure(name) or capability == "geometry"
    if capability == "dense":
        structured = False
    kwargs = {"tol": TOL, "max_iter": MAX_ITER.get(name, 5000)}
    if capability in ("unroll", "implicit", "envelope", "detach"):
        return _base(structured), dict(kwargs, grad=capability)
    if capability == "batched":
        x, y = _clouds(lead=(2,))
        cost = otalign.PointCloud(x, y, "half_sqeuclidean")
        return Problem(cost if structured else cost.matrix(), eps=0.5), kwargs
    if capability == "masked":
        x, y = _clouds()
        mask = torch.zeros(7, 6, dtype=torch.bool)
        mask[0, 0] = mask[3, 2] = True
        return Problem(otalign.costs.half_sqeuclidean(x, y), eps=0.5, mask=mask), kwargs
    if capability == "relaxed":
        return _base(structured, rho_a=1.0, rho_b=1.0), kwargs
    if capability == "uniform_reference":
        return _base(structured, reference="uniform"), kwargs
    if capability == "warm_start":
        return _base(structured), dict(kwargs, init="previous")
    if capability == "fixed_iterations":
        return None, None  # a property of the losses' use; checked by the losses (test below)
    if capability in ("geometry", "dense"):
        return _base(structured), kwargs
    raise AssertionError(capability)


PAIRS = [(name, capability) for name in ("sinkhorn", "unbalanced", "proximal", "pot", "geomloss", "lowrank", "exact")
         for capability in CAPABILITIES if capability not in ("sharded", "fixed_iterations")]


def test_the_table_covers_every_registered_solver_and_capability():
    built_in = {name for name in available() if solver_class(name).__module__.startswith("otalign.solvers.")}
    assert {name for name, _ in PAIRS} == built_in
    assert {c for _, c in PAIRS} | {"sharded", "fixed_iterations"} == set(CAPABILITIES)


@pytest.mark.parametrize("name, capability", PAIRS)
def test_every_solver_serves_or_refuses_every_capability(name, capability):
    if name in ("pot", "exact"):
        pytest.importorskip("ot")
    if name == "geomloss":
        pytest.importorskip("geomloss")
    problem, kwargs = case(capability, name)
    options = OPTIONS.get(name, {})
    if kwargs.get("init") == "previous":
        kwargs = dict(kwargs, init=solve(problem, name, **options, tol=TOL, max_iter=kwargs["max_iter"]))
    if capability not in solver_class(name).supports:
        with pytest.raises(ValueError, match=rf"^solver: {name!r} does not support {_escaped(capability)}"):
            solve(problem, name, **options, **kwargs)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", otalign.ConvergenceWarning)
        plan = solve(problem, name, **options, **kwargs)
    if capability == "batched":  # batched = looped, whatever the solver
        for i in range(2):
            alone = solve(Problem(_slice(problem.geometry, i), eps=problem.eps), name, **options, **kwargs)
            torch.testing.assert_close(plan.matrix[i], alone.matrix, rtol=1e-6, atol=1e-9)
    if capability == "warm_start" and "implicit" in solver_class(name).supports:  # a fixed point stays put
        torch.testing.assert_close(plan.matrix, kwargs["init"].matrix, rtol=1e-5, atol=1e-8)
    if plan.converged:  # certified to the solver's residual tolerance (low-rank: its projection's inner_tol)
        assert float(plan.measured_residual().max()) <= solver_class(name)(**options).residual_tolerance(TOL)


def _slice(geometry, i):
    if isinstance(geometry, otalign.PointCloud):
        return otalign.PointCloud(geometry.x[i], geometry.y[i], geometry.cost_function)
    return geometry.cost[i]


def _escaped(capability: str) -> str:
    import re

    return re.escape(CAPABILITIES[capability])


@pytest.mark.parametrize("name", ["pot", "geomloss", "lowrank", "exact"])
def test_losses_refuse_solvers_that_cannot_run_fixed_iterations(name):
    with pytest.raises(ValueError, match=rf"^solver: {name!r} does not support exactly max_iter iterations"):
        otalign.losses.GCAInfoNCE(solver=name, solver_options=OPTIONS.get(name))


def test_a_solver_declares_nothing_optional_by_default():
    class Minimal(otalign.Solver):
        name = "minimal_test"

        def run(self, problem, max_iter, tol, init):
            from otalign.halfstep import row_step

            f, _ = row_step(problem, torch.zeros_like(problem.b))
            return otalign.Plan(problem, f, torch.zeros_like(problem.b), 1, False)

    solver = Minimal()
    assert solver.supports == {"dense", "unroll", "detach"}
    with pytest.raises(ValueError, match=r"^solver: 'minimal_test' does not support a batch of problems"):
        solve(Problem(torch.rand(2, 3, 4)), solver)
    with pytest.raises(ValueError, match=r"^solver: 'minimal_test' does not support relaxed marginals"):
        solver(Problem(torch.rand(3, 4), rho_a=1.0), tol=0)
    check_supported(solver, ["dense", "unroll"])


def test_a_solver_cannot_override_call():
    with pytest.raises(TypeError, match="override run"):
        class Bypass(otalign.Solver):
            def __call__(self, problem, **kwargs):
                return None


def test_unknown_capability_is_named():
    with pytest.raises(ValueError, match="^capability: unknown capability 'teleport'"):
        check_supported(solver_class("sinkhorn")(), ["teleport"])


def test_masked_support_is_exact():
    """The masked case of the table: forbidden pairs carry exactly no mass."""
    problem, kwargs = case("masked", "sinkhorn")
    plan = solve(problem, **kwargs)
    assert plan.matrix[0, 0] == 0 and plan.matrix[3, 2] == 0
    assert math.isfinite(float(plan.value))
