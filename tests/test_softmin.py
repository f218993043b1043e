"""The soft-min primitive ``otalign.softmin.logsumexp`` against ``torch.logsumexp`` on the materialised logits:
values and gradients, both axes, batched, several row blocks, stabiliser hints far from the answer, masks,
point clouds, and ``gradcheck``. float64 unless stated; tolerances 1e-12 relative on values."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from otalign import DenseCost, PointCloud
from otalign.costs import sqeuclidean
from otalign.softmin import logsumexp

EPS = 0.07


def reference(C: torch.Tensor, h: torch.Tensor, eps: float, axis: int) -> torch.Tensor:
    """``LSE_j[(h_j - C_ij)/eps]`` (axis 1) or ``LSE_i[(h_i - C_ij)/eps]`` (axis 0), materialised."""
    logits = (h.unsqueeze(-2) - C) / eps if axis == 1 else (h.unsqueeze(-1) - C) / eps
    return torch.logsumexp(logits, dim=-1 if axis == 1 else -2)


def inputs(batch, axis, seed=0, n=11, m=6):
    gen = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    C = torch.rand(lead + (n, m), generator=gen, dtype=torch.float64)
    h = 0.3 * torch.randn(lead + ((m,) if axis == 1 else (n,)), generator=gen, dtype=torch.float64)
    return C, h


HINTS = [None, "exact", "off_by_5", "far_above", "far_below"]


def make_hint(kind, C, h, axis):
    if kind is None:
        return None
    exact = reference(C, h, EPS, axis)
    return {"exact": exact, "off_by_5": exact + 5.0, "far_above": exact + 1e4, "far_below": exact - 1e4}[kind]


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("block_rows", [None, 2, 4])
@pytest.mark.parametrize("hint", HINTS)
def test_values_and_gradients_match_torch(axis, batch, block_rows, hint):
    C, h = inputs(batch, axis)
    C_ours, h_ours = C.clone().requires_grad_(), h.clone().requires_grad_()
    C_ref, h_ref = C.clone().requires_grad_(), h.clone().requires_grad_()
    out = logsumexp(DenseCost(C_ours), h_ours, EPS, axis, hint=make_hint(hint, C, h, axis), block_rows=block_rows)
    expected = reference(C_ref, h_ref, EPS, axis)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad(out, (C_ours, h_ours), upstream)
    grads_ref = torch.autograd.grad(expected, (C_ref, h_ref), upstream)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1])
def test_pointcloud_matches_dense_values_and_gradients(axis):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)
    h = 0.2 * torch.randn(2, 5 if axis == 1 else 9, generator=gen, dtype=torch.float64)
    xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
    out = logsumexp(PointCloud(xs, ys, "sqeuclidean"), h, 0.5, axis, block_rows=2)
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    expected = reference(sqeuclidean(xr, yr), h, 0.5, axis)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad(out, (xs, ys), upstream)
    grads_ref = torch.autograd.grad(expected, (xr, yr), upstream)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("cost", ["sqeuclidean", "negative_cosine"])
@pytest.mark.parametrize("hint", HINTS)
@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("axis", [0, 1])
def test_pointcloud_tiles_match_torch(axis, batch, hint, cost, monkeypatch):
    """Wide point clouds are visited in tiles of rows x columns (here 3 rows x 4 or 2 columns, ragged at the edges):
    the online maximum, the hinted sums and the gradients are those of the materialised logits."""
    import otalign.geometry as geometry_module

    monkeypatch.setattr(geometry_module, "BLOCK_ELEMENTS", 6)
    monkeypatch.setattr(geometry_module, "TILE_ROWS", 3)
    gen = torch.Generator().manual_seed(3)
    lead = () if batch is None else (batch,)
    x = torch.randn(lead + (10, 3), generator=gen, dtype=torch.float64)
    y = torch.randn(lead + (11, 3), generator=gen, dtype=torch.float64)
    h = 0.2 * torch.randn(lead + ((11,) if axis == 1 else (10,)), generator=gen, dtype=torch.float64)
    geometry = PointCloud(x.clone().requires_grad_(), y.clone().requires_grad_(), cost)
    tiles = list(geometry.tiles())
    columns = 4 if batch is None else 2  # 2 * BLOCK_ELEMENTS // (TILE_ROWS * batch)
    assert len(tiles) == 4 * -(-11 // columns) and {stop - start for start, stop, _ in tiles} == {3, 1}
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    C = PointCloud(xr, yr, cost).matrix()
    expected = reference(C, h, EPS, axis)
    out = logsumexp(geometry, h, EPS, axis, hint=make_hint(hint, C.detach(), h, axis))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad(out, geometry.tensors(), upstream)
    for got, want in zip(grads, torch.autograd.grad(expected, (xr, yr), upstream)):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("seed", range(6))
def test_hints_anywhere_give_the_exact_answer_in_float32(axis, seed):
    """A hint is accepted only where the clamped terms cannot exceed the sum's round-off; whatever the hint's
    error (drawn from +-200 units), the result is the exact log-sum-exp to float32 precision."""
    gen = torch.Generator().manual_seed(seed)
    C, h = inputs(None, axis, seed=seed, n=40, m=30)
    C32, h32 = (C * 5).float(), h.float()
    exact = reference(C32.double(), h32.double(), 0.01, axis)
    hint = (exact + 200 * (2 * torch.rand(exact.shape, generator=gen, dtype=torch.float64) - 1)).float()
    out = logsumexp(DenseCost(C32), h32, 0.01, axis, hint=hint, block_rows=7)
    torch.testing.assert_close(out.double(), exact, rtol=0, atol=1e-6 * float(exact.abs().max()))


@pytest.mark.parametrize("axis", [0, 1])
def test_masked_pairs_are_excluded(axis):
    C, h = inputs(None, axis, n=6, m=6)
    mask = torch.eye(6, dtype=torch.bool)
    C_live = C.clone().requires_grad_()
    out = logsumexp(DenseCost(C_live, mask), h, EPS, axis, block_rows=2)
    logits = (h.unsqueeze(-2) - C) / EPS if axis == 1 else (h.unsqueeze(-1) - C) / EPS
    expected = torch.logsumexp(logits.masked_fill(mask, -torch.inf), dim=1 if axis == 1 else 0)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), C_live)
    assert torch.isfinite(grad).all()
    assert torch.all(grad[mask] == 0)


@pytest.mark.parametrize("axis", [0, 1])
def test_float32_wide_range_is_finite_and_accurate(axis):
    """Logits spanning thousands of units (most exponents clamped): still torch's answer to float32 precision."""
    C, h = inputs(None, axis, seed=4, n=64, m=48)
    C32, h32 = (C * 50).float(), h.float()
    out = logsumexp(DenseCost(C32), h32, 0.01, axis, hint=torch.zeros(48 if axis == 0 else 64), block_rows=16)
    expected = reference(C32.double(), h32.double(), 0.01, axis)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("axis", [0, 1])
def test_gradcheck_dense(axis):
    C, h = inputs(2, axis, seed=5, n=5, m=4)
    C.requires_grad_(), h.requires_grad_()
    assert gradcheck(lambda C, h: logsumexp(DenseCost(C), h, 0.3, axis, block_rows=2), (C, h))


@pytest.mark.parametrize("axis", [0, 1])
def test_gradcheck_pointcloud(axis):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    h = torch.randn(4 if axis == 1 else 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, y, h: logsumexp(PointCloud(x, y), h, 0.7, axis, block_rows=2), (x, y, h))


def test_bad_axis_is_rejected():
    C, h = inputs(None, 1)
    with pytest.raises(ValueError, match="axis"):
        logsumexp(DenseCost(C), h, EPS, 2)
