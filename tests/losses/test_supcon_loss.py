"""SupCon = Khosla et al.'s L_out; label, domain-prior and hierarchical targets reach the loss as intended."""

import pytest
import torch

from otalign import targets
from otalign.losses import GCAInfoNCE, InfoNCE, SupCon
from loss_reference import kernel, kl_per_anchor, supcon_out


def views(seed, n=8, d=5, n_views=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(n_views)]


@pytest.mark.parametrize("n_views", [2, 3])
def test_supcon_equals_khosla_l_out(n_views):
    z = views(0, n_views=n_views)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 2, 0])
    ours = SupCon(0.1, reduction="none")(*z, labels=labels)
    reference = supcon_out(z, labels, 0.1)
    assert torch.allclose(ours, reference, atol=1e-10)
    g_ours = torch.autograd.grad(ours.mean(), z)
    g_ref = torch.autograd.grad(reference.mean(), z)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-8)


def test_supcon_needs_labels():
    with pytest.raises(ValueError, match="labels"):
        SupCon()(*views(1))


@pytest.mark.parametrize("loss", [InfoNCE(0.3), GCAInfoNCE(0.3, 5), SupCon(0.3)])
def test_labels_equal_target_from_labels(loss):
    z = [x.detach() for x in views(2)]
    labels = torch.tensor([3, 1, 3, 2, 1, 1, 2, 0])
    assert torch.allclose(loss(*z, labels=labels), loss(*z, target=targets.from_labels(labels, 2, torch.float64)))


def hand_domain_prior(domains, alpha, beta, n_views=2):
    n = len(domains)
    size = n * n_views
    out = torch.zeros(size, size, dtype=torch.float64)
    for i in range(size):
        for j in range(size):
            if i == j:
                continue
            same_sample = i % n == j % n
            same_domain = domains[i % n] == domains[j % n]
            out[i, j] = float(same_sample) + (alpha if same_domain else beta)
    return out


def hand_hierarchy(levels, weights, n_views=2):
    n = len(levels[0])
    size = n * n_views
    out = torch.zeros(size, size, dtype=torch.float64)
    for i in range(size):
        for j in range(size):
            if i != j:
                out[i, j] = sum(w for level, w in zip(levels, weights) if level[i % n] == level[j % n])
    return out


def test_domain_prior_target_through_the_loss():
    z = [x.detach() for x in views(3)]
    domains = [0, 0, 1, 1, 2, 2, 0, 1]
    target = targets.domain_prior(torch.tensor(domains), alpha=0.5, beta=0.1, dtype=torch.float64)
    reference = kl_per_anchor(kernel(z, 0.5), hand_domain_prior(domains, 0.5, 0.1)).mean()
    assert torch.allclose(InfoNCE(0.5)(*z, target=target), reference, atol=1e-10)


def test_hierarchical_target_through_the_loss():
    z = [x.detach() for x in views(4)]
    fine = [0, 1, 2, 3, 0, 1, 2, 3]
    coarse = [0, 0, 1, 1, 0, 0, 1, 1]
    instance = list(range(8))
    weights = [1.0, 0.5, 0.25]
    levels = [torch.tensor(instance), torch.tensor(fine), torch.tensor(coarse)]
    target = targets.hierarchical(levels, weights, dtype=torch.float64)
    reference = kl_per_anchor(kernel(z, 0.5), hand_hierarchy([instance, fine, coarse], weights)).mean()
    assert torch.allclose(InfoNCE(0.5)(*z, target=target), reference, atol=1e-10)
