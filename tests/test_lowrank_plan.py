"""LowRankPlan: every quantity computed from the factors equals the one of the materialised plan."""

from __future__ import annotations

import pytest
import torch

from otalign import LowRankPlan, PointCloud, Problem

F64 = torch.float64


def make_plan(batch=()):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch + (7, 2), generator=gen, dtype=F64), torch.randn(batch + (5, 2), generator=gen, dtype=F64)
    Q, R = torch.rand(batch + (7, 3), generator=gen, dtype=F64), torch.rand(batch + (5, 3), generator=gen, dtype=F64)
    g = torch.rand(batch + (3,), generator=gen, dtype=F64) + 0.1
    return LowRankPlan(Problem(PointCloud(x, y), eps=0.1), Q, R, g, epsilon=0.2, iterations=0, converged=False)


@pytest.mark.parametrize("batch", [(), (2,)])
def test_factored_quantities_equal_the_matrix(batch):
    plan = make_plan(batch)
    P = torch.einsum("...ik,...jk->...ij", plan.Q / plan.inner_marginal.unsqueeze(-2), plan.R)
    torch.testing.assert_close(plan.matrix, P)
    torch.testing.assert_close(plan.log_matrix, P.log())
    rows, cols = plan.marginals
    torch.testing.assert_close(rows, P.sum(-1))
    torch.testing.assert_close(cols, P.sum(-2))
    torch.testing.assert_close(plan.marginal_error[0], (P.sum(-1) - plan.problem.a).abs().sum(-1))
    torch.testing.assert_close(plan.mass, P.sum((-1, -2)))
    C = plan.problem.cost
    torch.testing.assert_close(plan.value_linear, (C * P).sum((-1, -2)))
    entropy = sum((t * t.log()).flatten(len(batch)).sum(-1) for t in (plan.Q, plan.R, plan.inner_marginal))
    torch.testing.assert_close(plan.value, (C * P).sum((-1, -2)) + 0.2 * entropy)
    v = torch.randn(batch + (5, 4), dtype=F64)
    u = torch.randn(batch + (7, 4), dtype=F64)
    torch.testing.assert_close(plan.apply(v, axis=1), P @ v)
    torch.testing.assert_close(plan.apply(u, axis=0), P.transpose(-1, -2) @ u)
    assert plan.rank == 3 and "rank=3" in repr(plan)


def test_apply_rejects_bad_axis():
    with pytest.raises(ValueError, match=r"^axis: expected 0 or 1"):
        make_plan().apply(torch.zeros(5, 1, dtype=F64), axis=2)
