"""What a run's figures show: plan.png's target is the run's own target on a batch spread over the test set; an
evaluation setting the data cannot satisfy is refused before training."""

import pytest
import torch
from torch import nn

from otalign import targets
from otalign.losses import GCAInfoNCE, SupCon
from otalign.training import Config, TensorData
from otalign.training.experiment import check_evaluation_settings, plan_of_batch, plan_samples
from otalign.training.models import ContrastiveModel
from otalign.training.target_rules import target_rule


class Jitter:
    def __call__(self, x, generator):
        return x + 0.1 * torch.randn(x.shape, generator=generator), x + 0.1 * torch.randn(x.shape, generator=generator)


def domain_data() -> TensorData:
    """64 test samples sorted by domain (4 domains of 16), labels cycling over 4 classes."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    y = torch.arange(64) % 4
    domains = torch.arange(64) // 16
    return TensorData(x, y, x, y, Jitter(), (5,), train_meta={"domain": domains}, test_meta={"domain": domains})


def test_plan_png_shows_the_runs_domain_prior_target_on_several_domains():
    data = domain_data()
    rule = target_rule(Config(target="domain-prior", alpha=0.1, beta=0.0), ("domain",))
    model = ContrastiveModel(nn.Linear(5, 4), nn.Linear(4, 3), GCAInfoNCE(iterations=2), rule=rule)
    plan, target = plan_of_batch(model, data, Config(), torch.device("cpu"), samples=8)
    index = plan_samples(64, 8)
    domains = data.test_meta["domain"][index]
    assert domains.unique().numel() == 4  # not all from the first domain
    expected = targets.domain_prior(domains, 0.1, 0.0, 2)
    torch.testing.assert_close(target, expected)
    assert not torch.equal(target, targets.paired(8, 2))  # the run's target, not the pairing
    assert plan.shape == target.shape == (16, 16)


def test_plan_png_target_is_the_labels_for_supcon_and_the_pairing_otherwise():
    data = domain_data()
    index = plan_samples(64, 8)
    supcon = ContrastiveModel(nn.Linear(5, 4), nn.Linear(4, 3), SupCon(), uses_labels=True)
    torch.testing.assert_close(plan_of_batch(supcon, data, Config(), torch.device("cpu"), samples=8)[1],
                               targets.from_labels(data.test_y[index]))
    plain = ContrastiveModel(nn.Linear(5, 4), nn.Linear(4, 3), GCAInfoNCE(iterations=2))
    torch.testing.assert_close(plan_of_batch(plain, data, Config(), torch.device("cpu"), samples=8)[1],
                               targets.paired(8, 2))


def test_few_label_probe_larger_than_a_class_is_refused_before_training():
    data = domain_data()  # 16 training samples per class
    check_evaluation_settings(Config(eval_labels_per_class=16), data)
    with pytest.raises(ValueError, match="eval_labels_per_class: 17 labels per class, but class 0 has only 16"):
        check_evaluation_settings(Config(eval_labels_per_class=17), data)
