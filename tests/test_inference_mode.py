"""Every solver runs under ``torch.inference_mode()`` and returns there what it returns under ``torch.no_grad()``.

Inference tensors keep no version counter; caches keyed on a tensor's write count (a plan's known scalings, the
low-rank workspace's logs of the masses) must then recompute instead of reading the counter (which raises)."""

from __future__ import annotations

import pytest
import torch

import otalign
from otalign import PointCloud, Problem
from otalign.gromov import GWProblem

CASES = [  # (solver, options, eps, tol)
    ("sinkhorn", {}, 0.5, 0.0),  # kernel domain, scaling form
    ("sinkhorn", {}, 0.005, 0.0),  # absorbed kernel, scaling form
    ("sinkhorn", {}, 0.05, 1e-6),  # absorbed kernel, half-steps to a tolerance
    ("sinkhorn", {"kernel": "blocked"}, 0.05, 1e-6),
    ("unbalanced", {}, 0.05, 1e-6),
    ("proximal", {}, 0.05, 1e-5),
    ("exact", {}, 0.05, 1e-9),
    ("pot", {}, 0.05, 1e-6),
    ("geomloss", {}, 0.05, 0.0),
]


def _problem(eps: float, rho: float = float("inf"), cloud: bool = False) -> Problem:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    if cloud:  # geomloss solves point clouds only
        return Problem(PointCloud(x / 3, y / 3, cost="half_sqeuclidean"), eps=eps)
    return Problem(torch.cdist(x, y) ** 2 / 10, eps=eps, rho_a=rho, rho_b=rho)


@pytest.mark.parametrize("solver, options, eps, tol", CASES)
def test_dense_solvers(solver, options, eps, tol):
    """Solved and read under each mode, and solved under inference_mode but read outside it (the plan's matrix is
    then formed out of place: an inference tensor takes no in-place write there)."""
    if solver in ("pot", "geomloss"):
        pytest.importorskip("ot" if solver == "pot" else "geomloss")
    rho = 1.0 if solver == "unbalanced" else float("inf")

    def solve():
        return otalign.solve(_problem(eps, rho, solver == "geomloss"), solver, max_iter=300, tol=tol, **options)

    def read(plan):
        return plan.matrix.clone(), plan.marginals[0].clone(), float(plan.value), plan.converged

    with torch.no_grad():
        expected = read(solve())
    with torch.inference_mode():
        inside = read(solve())
    with torch.inference_mode():
        plan = solve()
    outside = read(plan)
    for got in (inside, outside):
        for x, y in zip(got[:2], expected[:2]):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)
        assert got[2] == pytest.approx(expected[2], rel=1e-9) and got[3] == expected[3]


@pytest.mark.parametrize("tol, inner_tol", [(0.0, 0.0), (0.0, 1e-9), (1e-7, 1e-8)])
def test_lowrank(tol, inner_tol):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(60, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    results = []
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            problem = Problem(PointCloud(x, y), eps=0.5)
            plan = otalign.solve(problem, "lowrank", rank=4, max_iter=30, tol=tol, inner_tol=inner_tol,
                                 inner_max_iter=200)
            plan = otalign.solve(problem, "lowrank", rank=4, max_iter=5, tol=tol, inner_tol=inner_tol,
                                 inner_max_iter=200, init=plan)  # a second solve: the workspace's caches again
            results.append((plan.Q.clone(), plan.R.clone(), plan.marginals[0].clone()))
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    outside = plan.marginals[0]  # the last plan, solved under inference_mode, read outside it
    torch.testing.assert_close(outside, results[0][2], rtol=1e-9, atol=1e-12)


def test_gromov():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(25, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    results = []
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            plan = otalign.solve(GWProblem(torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2, eps=0.05), max_iter=20)
            results.append(plan.matrix.clone())
    torch.testing.assert_close(results[1], results[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(plan.matrix, results[0], rtol=1e-9, atol=1e-12)  # read outside inference_mode
