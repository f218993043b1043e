"""GCA-UOT against plain unbalanced scaling, and its balanced limit rho -> inf."""

import math

import pytest
import torch

from otalign.losses import GCAUOT, GCARINCE, GCAInfoNCE
from loss_reference import kernel, kl_per_anchor, pairing, robust_per_anchor, sinkhorn_v


def views(seed, n=6, d=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]


def test_gca_uot_matches_plain_unbalanced_scaling():
    z = views(0)
    eps, rho, r1, r2 = 0.5, 0.2, 1.0, 0.3
    k = kernel(z, eps)
    k_tilde = k * sinkhorn_v(k, 10, lam=rho / (rho + eps))
    target = pairing(6, 2)
    reference = (r1 * kl_per_anchor(k_tilde, target) + r2 * robust_per_anchor(k_tilde, target, 0.6, 0.01)).mean()
    ours = GCAUOT(eps, 10, rho=rho, q=0.6, lam=0.01, r1=r1, r2=r2)(*z)
    assert torch.allclose(ours, reference, atol=1e-10)
    g_ours = torch.autograd.grad(ours, z)
    g_ref = torch.autograd.grad(reference, z)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-8)


def test_gca_uot_tends_to_the_balanced_loss_as_rho_grows():
    z = [x.detach() for x in views(1)]
    r1, r2 = 1.0, 0.5
    balanced = r1 * GCAInfoNCE(0.5, 10)(*z) + r2 * GCARINCE(0.5, 10, q=0.6, lam=0.01)(*z)
    gaps = [(GCAUOT(0.5, 10, rho=rho, r1=r1, r2=r2)(*z) - balanced).abs().item() for rho in (1.0, 10.0, 1e3, 1e6)]
    for before, after in zip(gaps, gaps[1:]):
        assert after < before
    assert gaps[-1] < 1e-5
    exact = GCAUOT(0.5, 10, rho=math.inf, r1=r1, r2=r2)(*z)
    assert torch.allclose(exact, balanced, atol=1e-12)


def test_gca_uot_weights_are_kl_then_robust():
    z = [x.detach() for x in views(2)]
    kl_only = GCAUOT(r1=1.0, r2=0.0)(*z)
    robust_only = GCAUOT(r1=0.0, r2=1.0)(*z)
    both = GCAUOT(r1=2.0, r2=3.0)(*z)
    assert torch.allclose(both, 2 * kl_only + 3 * robust_only, atol=1e-12)
    assert kl_only > 0  # the KL (cross-entropy) term is positive; the robust term at these defaults is negative
    assert robust_only < 0


@pytest.mark.parametrize("name, value", [("rho", 0.0), ("r1", -1.0), ("r2", math.nan)])
def test_gca_uot_rejects_bad_parameters(name, value):
    with pytest.raises(ValueError, match=name):
        GCAUOT(**{name: value})
