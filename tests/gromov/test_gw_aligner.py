"""GWAligner: the Aligner call convention over two intra-domain geometries."""

from __future__ import annotations

import pytest
import torch

from otalign import Alignment, GWProblem, PointCloud, divergences
from otalign.gromov import GWAligner, GWPlan, solve_gw

from gw_reference import clouds, sqdist


def test_alignment_is_the_divergence_of_the_gw_plan():
    x, y, a, b = clouds(7, 7, seed=0)
    target = torch.eye(7, dtype=x.dtype)
    aligner = GWAligner(eps=0.05, max_iter=10, tol=0, inner_max_iter=30, inner_tol=0)
    out = aligner(PointCloud(x), PointCloud(y), target, a, b)
    assert isinstance(out, Alignment) and isinstance(out.plan, GWPlan)
    plan = solve_gw(GWProblem(PointCloud(x), PointCloud(y), a, b, eps=0.05), max_iter=10, tol=0, inner_max_iter=30,
                    inner_tol=0)
    assert torch.allclose(out.plan.matrix, plan.matrix)
    P = plan.matrix
    expected = -(target * (P / P.sum(1, keepdim=True)).log()).sum(1)  # row-normalised KL up to the target entropy
    assert torch.allclose(out.per_anchor, expected, atol=1e-12)
    assert torch.equal(out.weights, torch.ones(7, dtype=x.dtype))
    robust = GWAligner(divergence="robust", eps=0.05, max_iter=3, tol=0, inner_max_iter=20, inner_tol=0)(sqdist(x), sqdist(y), target)
    assert torch.allclose(robust.per_anchor, divergences.robust(robust.plan.inner, target))


def test_fused_batched_and_gradients():
    x, y, a, b = clouds(6, 5, seed=1, batch=2)
    x.requires_grad_(True)
    target = torch.rand(2, 6, 5, dtype=x.dtype)
    aligner = GWAligner(eps=0.1, alpha=0.5, max_iter=4, tol=0, inner_max_iter=10, inner_tol=0)
    out = aligner(PointCloud(x), PointCloud(y), target, cost_xy=PointCloud(x[..., :2], y))
    assert out.per_anchor.shape == (2, 6) and out.loss.shape == (2,)
    out.loss.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_arguments():
    x, y, _, _ = clouds(6, 5, seed=2)
    with pytest.raises(ValueError, match="grad"):
        GWAligner(grad="implicit")
    with pytest.raises(ValueError, match="loss"):
        GWAligner(loss="l2")
    with pytest.raises(ValueError, match="options"):
        from otalign.solvers import Sinkhorn
        GWAligner(Sinkhorn(), kernel="dense")
    with pytest.raises(ValueError, match="target"):
        GWAligner(eps=0.1, max_iter=2)(sqdist(x), sqdist(y), torch.ones(5, 6, dtype=x.dtype))
