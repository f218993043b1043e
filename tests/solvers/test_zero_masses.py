"""Structural zeros (:class:`otalign.Problem`): for every registered solver, a problem with zero masses gives the
plan of the problem with those rows and columns removed, padded with zeros."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from otalign import PointCloud, Problem, solve

pytest.importorskip("ot")
pytestmark = pytest.mark.filterwarnings("ignore::otalign.solver.ConvergenceWarning")
DTYPE = torch.float64

#: (solver, options, relaxations it supports, references it supports)
SOLVERS = [
    ("sinkhorn", {}, (math.inf, 0.5), ("product", "uniform")),
    ("unbalanced", {}, (math.inf, 0.5), ("product", "uniform")),
    ("proximal", {"inner_iter": 5, "max_iter": 30}, (math.inf, 0.5), ("product", "uniform")),
    ("pot", {}, (math.inf, 0.5), ("product", "uniform")),
    pytest.param("lowrank", {"rank": 2, "max_iter": 30}, (math.inf,), ("product", "uniform"), marks=pytest.mark.slow,
                 id="lowrank"),
]


def with_zeros(n: int, m: int, seed: int, zero_rows: list[int], zero_cols: list[int]):
    """A random cost and masses with zeros at ``zero_rows`` / ``zero_cols`` (both sides total 1)."""
    gen = torch.Generator().manual_seed(seed)
    C = torch.rand(n, m, generator=gen, dtype=DTYPE)
    a = torch.rand(n, generator=gen, dtype=DTYPE) + 0.2
    b = torch.rand(m, generator=gen, dtype=DTYPE) + 0.2
    a[zero_rows], b[zero_cols] = 0.0, 0.0
    return C, a / a.sum(), b / b.sum()


def assert_zeros_are_removed(C, a, b, name, options, **problem_options):
    """The plan of ``(C, a, b)`` against the plan without the zero rows / columns: equal on the support (1e-9),
    exactly zero off it, the same value; finite potentials on the support."""
    rows, cols = a > 0, b > 0
    plan = solve(Problem(C, a, b, **problem_options), name, tol=1e-11, **{"max_iter": 5000, **options})
    removed = solve(Problem(C[rows][:, cols], a[rows], b[cols], **problem_options), name, tol=1e-11,
                    **{"max_iter": 5000, **options})
    P = plan.matrix
    torch.testing.assert_close(P[rows][:, cols], removed.matrix, rtol=0, atol=1e-9)
    assert float(P[~rows].abs().sum()) == 0.0 and float(P[:, ~cols].abs().sum()) == 0.0
    torch.testing.assert_close(plan.value_linear, removed.value_linear, rtol=1e-9, atol=1e-12)
    assert bool(torch.isfinite(plan.matrix).all())


@pytest.mark.parametrize("name, options, rhos, references", SOLVERS,
                         ids=["sinkhorn", "unbalanced", "proximal", "pot", "lowrank"])
@settings(max_examples=6, deadline=None)
@given(
    n=st.integers(3, 8), m=st.integers(3, 8), seed=st.integers(0, 2**16),
    zero_rows=st.sets(st.integers(0, 2), max_size=2), zero_cols=st.sets(st.integers(0, 2), max_size=2),
    which=st.integers(0, 3),
)
def test_zero_masses_are_removed_rows(name, options, rhos, references, n, m, seed, zero_rows, zero_cols, which):
    """Property: zero masses at up to 2 rows and 2 columns, every reference, hard and relaxed sides."""
    if name == "lowrank" and min(n - len(zero_rows), m - len(zero_cols)) < options["rank"]:
        zero_rows = set()
        zero_cols = set()
    C, a, b = with_zeros(n, m, seed, sorted(zero_rows), sorted(zero_cols))
    rho = rhos[which % len(rhos)]
    reference = references[(which // 2) % len(references)]
    assert_zeros_are_removed(C, a, b, name, options, eps=0.1, rho_a=rho, rho_b=rho, reference=reference)


def test_geomloss_zero_masses():
    pytest.importorskip("geomloss")
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(6, 2, generator=gen, dtype=DTYPE), torch.randn(5, 2, generator=gen, dtype=DTYPE)
    a = torch.tensor([0.2, 0.0, 0.3, 0.1, 0.4, 0.0], dtype=DTYPE)
    b = torch.tensor([0.25, 0.25, 0.0, 0.25, 0.25], dtype=DTYPE)
    rows, cols = a > 0, b > 0
    plan = solve(Problem(PointCloud(x, y, cost="half_sqeuclidean"), a, b, eps=0.5), "geomloss")
    removed = solve(Problem(PointCloud(x[rows], y[cols], cost="half_sqeuclidean"), a[rows], b[cols], eps=0.5),
                    "geomloss")
    torch.testing.assert_close(plan.matrix[rows][:, cols], removed.matrix, rtol=0, atol=1e-9)
    assert float(plan.matrix[~rows].abs().sum()) == 0.0


def test_pot_zero_mass_regression():
    """Issue reproducer: ``Problem(torch.rand(3, 2), [.5, .5, 0])`` with "pot" raised "solver produced NaN"."""
    C, a, b = with_zeros(3, 2, 0, [2], [])
    plan = solve(Problem(C, a, b), "pot")
    assert plan.matrix[2].abs().sum() == 0 and bool(torch.isfinite(plan.f[:2]).all())


@pytest.mark.slow
def test_lowrank_zero_mass_gradient():
    """The gradient through the unrolled low-rank solve is finite, 0 on a zero row, and equals the gradient of the
    problem without the row on the others."""
    C, a, b = with_zeros(6, 5, 1, [2], [1])
    rows, cols = a > 0, b > 0
    full = C.clone().requires_grad_(True)
    solve(Problem(full, a, b), "lowrank", rank=2).value_linear.backward()
    part = C[rows][:, cols].clone().requires_grad_(True)
    solve(Problem(part, a[rows], b[cols]), "lowrank", rank=2).value_linear.backward()
    assert bool(torch.isfinite(full.grad).all())
    torch.testing.assert_close(full.grad[rows][:, cols], part.grad, rtol=0, atol=1e-10)
    assert float(full.grad[~rows].abs().sum()) == 0.0


def test_lowrank_refuses_a_zero_init():
    """An all-zero warm start was "factor Q is not finite; this is a bug"; it is now refused by name."""
    C, a, b = with_zeros(5, 4, 2, [], [])
    zeros = (torch.zeros(5, 2, dtype=DTYPE), torch.zeros(4, 2, dtype=DTYPE), torch.zeros(2, dtype=DTYPE))
    with pytest.raises(ValueError, match="init: Q must be positive"):
        solve(Problem(C, a, b), "lowrank", rank=2, init=zeros)
