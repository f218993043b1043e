"""A row or column whose every pair the mask forbids: legal when its mass is 0 or its side is relaxed or free (the
plan then gives it no mass and every solver agrees with the problem without it); refused, naming the line, only on
a hard side with positive mass."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from otalign import Problem, solve

DTYPE = torch.float64


def masked(n: int, m: int, seed: int, row: int):
    gen = torch.Generator().manual_seed(seed)
    C = torch.rand(n, m, generator=gen, dtype=DTYPE)
    mask = torch.zeros(n, m, dtype=torch.bool)
    mask[row] = True
    return C, mask


@settings(max_examples=10, deadline=None, print_blob=True)
@given(n=st.integers(3, 7), m=st.integers(2, 6), seed=st.integers(0, 2**16), legal=st.sampled_from(
    ["zero mass", "relaxed", "free"]), reference=st.sampled_from(["product", "uniform"]))
def test_fully_masked_row_is_legal(n, m, seed, legal, reference):
    """Property: the masked row gets no mass; with a zero mass the plan equals the problem without the row
    (sinkhorn, 1e-9); relaxed, the row's penalty is the whole missing mass ``rho_a a_i``."""
    row = seed % n
    C, mask = masked(n, m, seed, row)
    a = torch.full((n,), 1.0 / n, dtype=DTYPE)
    rho_a = {"zero mass": math.inf, "relaxed": 0.7, "free": 0.0}[legal]
    if legal == "zero mass":
        a[row] = 0.0
        a = a / a.sum()
    problem = Problem(C, a, eps=0.2, rho_a=rho_a, reference=reference, mask=mask)
    plan = solve(problem, tol=1e-9, max_iter=5000)
    assert plan.converged and float(plan.matrix[row].abs().sum()) == 0.0
    keep = torch.arange(n) != row
    if legal == "zero mass":
        removed = solve(Problem(C[keep], a[keep], eps=0.2, reference=reference, mask=mask[keep]), tol=1e-9,
                        max_iter=20_000)
        torch.testing.assert_close(plan.matrix[keep], removed.matrix, rtol=0, atol=1e-9)


def test_fully_masked_column_relaxed_is_legal():
    """Regression: a masked column on a relaxed column side was refused ("that mass could not be transported")."""
    C, mask = masked(4, 5, 1, 0)
    mask = mask.T.contiguous()
    plan = solve(Problem(C.T.contiguous(), eps=0.2, rho_b=1.0, mask=mask), tol=1e-9, max_iter=5000)
    assert float(plan.matrix[:, 0].abs().sum()) == 0.0


@pytest.mark.parametrize("side", ["row", "column"])
def test_hard_side_with_mass_is_refused_by_name(side):
    C, mask = masked(4, 4, 2, 1)
    if side == "column":
        C, mask = C.T.contiguous(), mask.T.contiguous()
    with pytest.raises(ValueError, match=f"mask: forbids every pair of {side} 1"):
        Problem(C, eps=0.2, mask=mask)
