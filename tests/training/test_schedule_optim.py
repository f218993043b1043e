import math

import pytest
import torch

from otalign.training.optim import LARS, build_optimiser, parameter_groups
from otalign.training.schedule import WarmupCosine, warmup_cosine


def test_warmup_cosine_closed_form():
    total, warmup = 20, 4
    factor = WarmupCosine(total, warmup)
    for step in range(warmup):
        assert factor(step) == pytest.approx((step + 1) / warmup)
    for step in range(warmup, total):
        t = (step - warmup) / (total - warmup)
        assert factor(step) == pytest.approx(0.5 * (1 + math.cos(math.pi * t)))


def test_scheduler_sets_lr_per_step():
    weight = torch.nn.Parameter(torch.ones(2))
    optimiser = torch.optim.SGD([weight], lr=0.1)
    scheduler = warmup_cosine(optimiser, total_steps=10, warmup_steps=2)
    seen = []
    for _ in range(10):
        seen.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    factor = WarmupCosine(10, 2)
    assert seen == pytest.approx([0.1 * factor(s) for s in range(10)])


def test_parameter_groups_exclude_biases_and_norms_from_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    decayed, plain = parameter_groups(model, weight_decay=0.1)
    assert {p.ndim for p in decayed["params"]} == {2} and decayed["weight_decay"] == 0.1
    assert {p.ndim for p in plain["params"]} == {1} and plain["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_lars_step_matches_hand_computation():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    optimiser = LARS([{"params": [w], "weight_decay": 0.0, "adapt": True}], lr=0.5, momentum=0.9, trust=0.1)
    w.grad = torch.tensor([[0.0, 2.0]])  # |g| = 2
    optimiser.step()
    expected = torch.tensor([[3.0, 4.0]]) - 0.5 * (0.1 * 5 / 2) * torch.tensor([[0.0, 2.0]])
    assert torch.allclose(w.detach(), expected)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "lars"])
def test_every_optimiser_takes_a_step(name):
    model = torch.nn.Linear(3, 2)
    before = model.weight.detach().clone()
    optimiser = build_optimiser(name, model, lr=0.1, weight_decay=1e-4)
    model(torch.randn(5, 3)).pow(2).sum().backward()
    optimiser.step()
    assert not torch.equal(before, model.weight.detach())


def test_unknown_optimiser():
    with pytest.raises(ValueError, match="name"):
        build_optimiser("rmsprop", torch.nn.Linear(2, 2), lr=0.1, weight_decay=0.0)
