"""InfoNCE = NT-Xent = KL to the rows-only plan; GCA-InfoNCE below it and non-increasing in T."""

import math

import pytest
import torch

import otalign
from otalign.losses import GCAInfoNCE, InfoNCE, NTXent
from loss_reference import kernel, kl_per_anchor, nt_xent, pairing, sinkhorn_v


def views(seed, n=6, d=5, n_views=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(n_views)]


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_infonce_equals_ntxent_value_and_gradient(temperature):
    z = views(0, n=7)
    ours = InfoNCE(temperature)(*z)
    simclr = NTXent(temperature)(*z)
    loops = nt_xent(z, temperature).mean()
    assert torch.allclose(ours, simclr, atol=1e-6, rtol=0)
    assert torch.allclose(ours, loops, atol=1e-6, rtol=0)
    g_ours = torch.autograd.grad(ours, z)
    g_ref = torch.autograd.grad(loops, z)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_infonce_is_the_kl_of_the_rows_only_plan():
    z = views(1)
    zz = torch.cat(z)
    unit = zz / zz.norm(dim=1, keepdim=True)
    eye = torch.eye(12, dtype=torch.bool)
    plan = otalign.solve(
        otalign.Problem(-(unit @ unit.T), eps=0.5, rho_a=math.inf, rho_b=0.0, mask=eye), max_iter=1, tol=0
    )
    p_hat = plan.matrix / plan.matrix.sum(1, keepdim=True)
    partner = (torch.arange(12) + 6) % 12
    kl = -torch.log(p_hat[torch.arange(12), partner]).mean()
    assert torch.allclose(InfoNCE(0.5)(*z), kl, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("temperature", [0.5, 0.2])
def test_gca_infonce_non_increasing_in_iterations_and_below_infonce(seed, temperature):
    z = [x.detach() for x in views(seed, n=8, d=4)]
    values = [InfoNCE(temperature)(*z).item()]
    values += [GCAInfoNCE(temperature, iterations=t)(*z).item() for t in range(1, 11)]
    for before, after in zip(values, values[1:]):
        assert after <= before + 1e-12
    assert values[-1] < values[0]


def test_gca_infonce_monotone_for_a_balanced_label_target():
    z = [x.detach() for x in views(7, n=8, d=4)]
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # equal class counts: the normalised target is doubly stochastic
    values = [InfoNCE(0.3)(*z, labels=labels).item()]
    values += [GCAInfoNCE(0.3, iterations=t)(*z, labels=labels).item() for t in range(1, 8)]
    for before, after in zip(values, values[1:]):
        assert after <= before + 1e-12


@pytest.mark.parametrize("iterations", [1, 3, 10])
def test_gca_infonce_matches_plain_sinkhorn(iterations):
    z = views(3)
    k = kernel(z, 0.5)
    k_tilde = k * sinkhorn_v(k, iterations)
    reference = kl_per_anchor(k_tilde, pairing(6, 2)).mean()
    ours = GCAInfoNCE(0.5, iterations)(*z)
    assert torch.allclose(ours, reference, atol=1e-10)
    g_ours = torch.autograd.grad(ours, z)
    g_ref = torch.autograd.grad(reference, z)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-8)


def test_three_views():
    z = views(4, n=5, n_views=3)
    k = kernel(z, 0.5)
    reference = kl_per_anchor(k, pairing(5, 3))
    ours = InfoNCE(0.5, reduction="none")(*z)
    assert ours.shape == (15,)
    assert torch.allclose(ours, reference, atol=1e-10)
    assert torch.allclose(NTXent(0.5, reduction="none")(*z), reference, atol=1e-10)
    gca = GCAInfoNCE(0.5, 4)(*z)
    k_tilde = k * sinkhorn_v(k, 4)
    assert torch.allclose(gca, kl_per_anchor(k_tilde, pairing(5, 3)).mean(), atol=1e-10)
