"""compat="authors": 1 - cos cost, similarity clamp at 1e-7, finite self-cost — and only when asked for."""

import pytest
import torch

from otalign.losses import GCARINCE, GCAInfoNCE, InfoNCE, RINCE


def anti_aligned_pair(seed=0, n=5, d=4):
    """Positive-orthant embeddings, except z1[0] = -z0[0]: its cosine with every other row is negative."""
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, d, generator=g, dtype=torch.float64).abs()
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64).abs()
    z1[0] = -z0[0]
    return z0.requires_grad_(), z1.requires_grad_()


@pytest.mark.parametrize("cls", [InfoNCE, GCAInfoNCE, RINCE, GCARINCE])
def test_clamp_kills_the_gradient_of_a_negatively_correlated_pair(cls):
    z0, z1 = anti_aligned_pair()
    (grad_default,) = torch.autograd.grad(cls()(z0, z1), z1)
    (grad_authors,) = torch.autograd.grad(cls(compat="authors")(z0, z1), z1)
    assert grad_default[0].norm() > 1e-3
    assert torch.equal(grad_authors[0], torch.zeros_like(grad_authors[0]))
    assert grad_authors[1:].norm() > 1e-3


def authors_kernel(z0, z1, eps):
    z = torch.cat([z0, z1])
    unit = z / z.norm(dim=1, keepdim=True)
    cost = 1 - (unit @ unit.T).clamp(min=1e-7)
    cost = cost.clone()
    cost.fill_diagonal_(cost.max().item())
    return torch.exp(-cost / eps)


def test_authors_infonce_and_rince_formulas():
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(5, 4, generator=g, dtype=torch.float64)
    z1 = z0 + 0.3 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    k = authors_kernel(z0, z1, 0.5)  # self-pair included, with the largest finite cost
    partner = (torch.arange(10) + 5) % 10
    pos = k[torch.arange(10), partner]
    infonce = -torch.log(pos / k.sum(1)).mean()
    rince = (-(pos**0.6) / 0.6 + (0.01 * k.sum(1)) ** 0.6 / 0.6).mean()
    assert torch.allclose(InfoNCE(0.5, compat="authors")(z0, z1), infonce, atol=1e-10)
    assert torch.allclose(RINCE(0.5, q=0.6, lam=0.01, compat="authors")(z0, z1), rince, atol=1e-10)
    assert not torch.allclose(InfoNCE(0.5)(z0, z1), infonce, atol=1e-3)


def test_default_is_not_compat():
    assert InfoNCE().compat is None and GCAInfoNCE().compat is None
