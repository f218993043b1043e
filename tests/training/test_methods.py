import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from otalign.training.byol import BYOL, target_momentum
from otalign.training.config import Config
from otalign.training.heads import mlp_head
from otalign.training.methods import METHODS, build_model, get_method, make_loss
from otalign.training.simsiam import SimSiam

ALL = ["infonce", "gca_infonce", "rince", "gca_rince", "gca_uot", "supcon", "ntxent", "byol", "simsiam"]


def networks(d_in=6, d_feat=5, d_proj=4):
    encoder = nn.Sequential(nn.Linear(d_in, d_feat), nn.ReLU())
    return encoder, nn.Linear(d_feat, d_proj)


def test_registry_has_every_method():
    assert set(ALL) <= set(METHODS)
    with pytest.raises(ValueError, match="method"):
        get_method("nope")


@pytest.mark.parametrize("name", ALL)
def test_each_method_takes_a_finite_step(name):
    torch.manual_seed(0)
    config = Config(method=name, projection_dim=4, hidden_dim=8, iterations=3)
    model = build_model(config, *networks())
    x0, x1 = torch.randn(8, 6), torch.randn(8, 6)
    labels = torch.arange(8) % 3
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    before = [p.detach().clone() for p in model.encoder.parameters()]
    loss = model(x0, x1, labels=labels)
    assert loss.dim() == 0 and math.isfinite(loss.item())
    loss.backward()
    optimiser.step()
    model.step_end(0.5)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.encoder.parameters()))


def test_loss_parameters_come_from_the_config():
    loss = make_loss("gca_uot", Config(temperature=0.3, iterations=4, rho=0.7, q=0.4, lam=0.02, r1=0.5, r2=0.1))
    assert (loss.temperature, loss.iterations, loss.rho, loss.q, loss.lam, loss.r1, loss.r2) == (
        0.3, 4, 0.7, 0.4, 0.02, 0.5, 0.1
    )
    assert make_loss("infonce", Config(iterations=4)).iterations == 1  # InfoNCE ignores iterations


def test_supcon_uses_labels_and_others_do_not():
    torch.manual_seed(0)
    z0, z1 = torch.randn(6, 4), torch.randn(6, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    supcon = build_model(Config(method="supcon"), nn.Identity(), nn.Identity())
    assert supcon(z0, z1, labels=labels).item() == pytest.approx(
        make_loss("supcon", Config())(z0, z1, labels=labels).item()
    )
    with pytest.raises(ValueError, match="labels"):
        supcon(z0, z1)
    infonce = build_model(Config(method="infonce"), nn.Identity(), nn.Identity())
    assert infonce(z0, z1, labels=labels).item() == pytest.approx(make_loss("infonce", Config())(z0, z1).item())


def test_byol_target_momentum_schedule():
    assert target_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert target_momentum(0.99, 1.0) == pytest.approx(1.0)
    assert target_momentum(0.99, 0.5) == pytest.approx(0.995)


def test_byol_target_is_an_ema_and_gets_no_gradient():
    torch.manual_seed(0)
    encoder, projector = networks()
    model = BYOL(encoder, projector, mlp_head(4, 8, 4), base_tau=0.9)
    for t, o in zip(model.target_parameters(), model.online_parameters()):
        assert torch.equal(t, o) and not t.requires_grad  # starts as a copy, frozen
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(torch.randn(8, 6), torch.randn(8, 6)).backward()
    assert all(t.grad is None for t in model.target_parameters())
    old_target = [t.detach().clone() for t in model.target_parameters()]
    optimiser.step()
    online = [o.detach().clone() for o in model.online_parameters()]
    assert any(not torch.equal(t, o) for t, o in zip(old_target, online))  # the online net moved, the target not
    progress = 0.25
    model.step_end(progress)
    tau = 1 - (1 - 0.9) * (math.cos(math.pi * progress) + 1) / 2
    for t, before, o in zip(model.target_parameters(), old_target, online):
        assert torch.allclose(t, tau * before + (1 - tau) * o, atol=1e-7)


def test_byol_leaves_a_frozen_part_of_the_target_bit_identical():
    torch.manual_seed(0)
    encoder, projector = networks()
    encoder[0].weight.requires_grad_(False)  # e.g. a frozen backbone
    model = BYOL(encoder, projector, mlp_head(4, 8, 4), base_tau=0.9)
    with torch.no_grad():
        model.target_encoder[0].weight.mul_(1.5)  # a target that differs from the online copy
        frozen = model.target_encoder[0].weight.detach().clone()
        model.target_encoder[0].bias.mul_(1.5)
    bias = model.target_encoder[0].bias.detach().clone()
    model.step_end(0.25)
    assert torch.equal(model.target_encoder[0].weight, frozen)  # not averaged
    assert not torch.equal(model.target_encoder[0].bias, bias)  # trainable parameters still are


def test_byol_loss_closed_form():
    # identity networks: online projection = x, predictor = identity, target = x
    model = BYOL(nn.Identity(), nn.Identity(), nn.Identity())
    x0, x1 = torch.randn(5, 3), torch.randn(5, 3)
    expected = (2 - 2 * F.cosine_similarity(x0, x1)).mean() * 2
    assert model(x0, x1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_simsiam_stop_gradient():
    torch.manual_seed(0)
    predictor = nn.Linear(4, 4)
    model = SimSiam(nn.Identity(), nn.Identity(), predictor)
    z0 = torch.randn(6, 4, requires_grad=True)
    z1 = torch.randn(6, 4, requires_grad=True)
    model(z0, z1).backward()
    # reference: only the predictor branch carries gradient; the other side is a constant
    r0, r1 = z0.detach().clone().requires_grad_(), z1.detach().clone().requires_grad_()
    reference = -(F.cosine_similarity(predictor(r0), z1.detach()).mean()
                  + F.cosine_similarity(predictor(r1), z0.detach()).mean()) / 2
    g0, g1 = torch.autograd.grad(reference, [r0, r1])
    assert torch.allclose(z0.grad, g0, atol=1e-6) and torch.allclose(z1.grad, g1, atol=1e-6)
    # without the stop-gradient the gradient would differ
    s0, s1 = z0.detach().clone().requires_grad_(), z1.detach().clone().requires_grad_()
    no_stop = -(F.cosine_similarity(predictor(s0), s1).mean() + F.cosine_similarity(predictor(s1), s0).mean()) / 2
    h0, _ = torch.autograd.grad(no_stop, [s0, s1])
    assert not torch.allclose(h0, g0, atol=1e-4)


def test_simsiam_loss_is_minus_one_at_perfect_prediction():
    model = SimSiam(nn.Identity(), nn.Identity(), nn.Identity())
    x = torch.randn(4, 3)
    assert model(x, 2 * x).item() == pytest.approx(-1.0)
