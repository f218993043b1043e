"""RINCE = Chuang et al.'s formula; q -> 0 recovers InfoNCE + log(lam); GCA-RINCE against plain Sinkhorn."""

import math

import pytest
import torch

from otalign.losses import GCARINCE, RINCE, InfoNCE
from loss_reference import kernel, pairing, rince_chuang, robust_per_anchor, sinkhorn_v


def views(seed, n=6, d=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]


@pytest.mark.parametrize("q, lam", [(0.6, 0.01), (1.0, 0.5), (0.2, 0.0)])
def test_rince_equals_chuang_formula(q, lam):
    z = views(0)
    ours = RINCE(0.5, q=q, lam=lam, reduction="none")(*z)
    reference = rince_chuang(z, 0.5, q, lam)
    assert torch.allclose(ours, reference, atol=1e-10)
    g_ours = torch.autograd.grad(ours.mean(), z)
    g_ref = torch.autograd.grad(reference.mean(), z)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-8)


def test_rince_tends_to_infonce_plus_log_lam_as_q_goes_to_zero():
    # pos^q / q = 1/q + log(pos) + O(q): the 1/q terms cancel and RINCE_q -> InfoNCE + log(lam).
    z = [x.detach() for x in views(1)]
    lam = 0.05
    infonce = InfoNCE(0.5)(*z).item()
    gaps = [abs(RINCE(0.5, q=q, lam=lam)(*z).item() - math.log(lam) - infonce) for q in (0.5, 0.1, 0.01, 0.001)]
    for before, after in zip(gaps, gaps[1:]):
        assert after < before
    assert gaps[-1] < 1e-2 * gaps[0]
    assert gaps[-1] < 1e-2


@pytest.mark.parametrize("iterations", [1, 10])
def test_gca_rince_matches_plain_sinkhorn(iterations):
    z = views(2)
    k = kernel(z, 0.5)
    k_tilde = k * sinkhorn_v(k, iterations)
    reference = robust_per_anchor(k_tilde, pairing(6, 2), 0.6, 0.01).mean()
    ours = GCARINCE(0.5, iterations, q=0.6, lam=0.01)(*z)
    assert torch.allclose(ours, reference, atol=1e-10)
    g_ours = torch.autograd.grad(ours, z)
    g_ref = torch.autograd.grad(reference, z)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-8)


def test_rince_rejects_bad_parameters():
    with pytest.raises(ValueError, match="q"):
        RINCE(q=0.0)
    with pytest.raises(ValueError, match="lam"):
        GCARINCE(lam=-1.0)


@pytest.mark.parametrize("name", ["RINCE", "GCARINCE", "GCAUOT"])
def test_target_with_an_empty_row_gives_finite_gradients(name):
    """An anchor without positives (a target row of zeros, documented as allowed) used to give NaN in z0.grad:
    the log-sum-exp of an all -inf row has a NaN backward that a torch.where after it does not stop. The anchor
    now contributes 0 and the gradient equals that of the loss summed over the other anchors."""
    from otalign import losses, targets

    loss = getattr(losses, name)(reduction="none")
    z0, z1 = views(3, n=4)
    quality = torch.tensor([0.0, 1, 1, 1, 1, 1, 1, 1], dtype=torch.float64)
    target = targets.weighted(targets.paired(4, dtype=torch.float64), quality)
    per_anchor = loss(z0, z1, target=target)
    assert per_anchor[0].item() == 0.0
    per_anchor.sum().backward()
    assert torch.isfinite(z0.grad).all() and torch.isfinite(z1.grad).all()
    y0, y1 = (z.detach().clone().requires_grad_() for z in (z0, z1))
    loss(y0, y1, target=target)[1:].sum().backward()
    torch.testing.assert_close(z0.grad, y0.grad, rtol=1e-10, atol=1e-12)
