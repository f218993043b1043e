"""GWAlignmentLoss: KL(target | GW plan) between two encoders' intra-domain geometries."""

from __future__ import annotations

import pytest
import torch

from otalign import PointCloud
from otalign.gromov import GWAligner
from otalign.losses import GWAlignmentLoss


def _embeddings(n=12, dx=5, dy=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, dx, generator=gen, dtype=torch.float64),
            torch.randn(n, dy, generator=gen, dtype=torch.float64))


def test_loss_is_the_kl_to_the_identity_pairing():
    zx, zy = _embeddings()
    loss_fn = GWAlignmentLoss(eps=0.1, iterations=4, inner_iterations=15, reduction="none")
    per_anchor = loss_fn(zx, zy)
    ux, uy = torch.nn.functional.normalize(zx, dim=1), torch.nn.functional.normalize(zy, dim=1)
    aligner = GWAligner(eps=0.1, max_iter=4, tol=0, inner_max_iter=15, inner_tol=0)
    P = aligner(PointCloud(ux), PointCloud(uy), torch.eye(12, dtype=zx.dtype)).plan.matrix
    assert torch.allclose(per_anchor, -(P / P.sum(1, keepdim=True)).diagonal().log(), atol=1e-12)
    mean = GWAlignmentLoss(eps=0.1, iterations=4, inner_iterations=15)(zx, zy)
    assert torch.allclose(mean, per_anchor.mean())
    assert torch.allclose(GWAlignmentLoss(eps=0.1, iterations=4, inner_iterations=15, reduction="sum")(zx, zy),
                          per_anchor.sum())


def test_loss_rewards_matching_geometries_and_trains():
    """A rotated copy (same intra distances) has a lower loss than an unrelated batch, and gradient steps on
    z_y lower the loss."""
    zx, unrelated = _embeddings(dy=5, seed=1)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    loss_fn = GWAlignmentLoss(eps=0.05, iterations=6, inner_iterations=15)
    assert loss_fn(zx, zx @ rotation) < loss_fn(zx, unrelated)
    zy = unrelated.clone().requires_grad_(True)
    optimiser = torch.optim.SGD([zy], lr=0.5)
    start = float(loss_fn(zx, zy.detach()))
    for _ in range(8):
        optimiser.zero_grad()
        loss = loss_fn(zx, zy)
        loss.backward()
        optimiser.step()
    assert float(loss_fn(zx, zy.detach())) < start


def test_gradcheck_and_custom_target():
    zx, zy = _embeddings(n=5, dx=3, dy=2, seed=3)
    zx.requires_grad_(True)
    zy.requires_grad_(True)
    target = torch.rand(5, 4, dtype=torch.float64)
    loss_fn = GWAlignmentLoss(eps=0.2, iterations=2, inner_iterations=5)
    assert torch.autograd.gradcheck(lambda a, b: loss_fn(a, b[:4], target=target), (zx, zy))


def test_bad_inputs():
    zx, zy = _embeddings()
    loss_fn = GWAlignmentLoss()
    with pytest.raises(ValueError, match="z_x"):
        loss_fn(zx[0], zy)
    with pytest.raises(ValueError, match="identity"):
        loss_fn(zx, zy[:5])
    with pytest.raises(TypeError, match="dtypes"):
        loss_fn(zx, zy.float())
    with pytest.raises(ValueError, match="reduction"):
        GWAlignmentLoss(reduction="avg")
    with pytest.raises(ValueError, match="iterations"):
        GWAlignmentLoss(iterations=0)
    assert "eps=0.1" in repr(loss_fn)
