"""Target rules of the setups helper (domain prior, hierarchy), the model that feeds them to the loss, and
leave-one-domain-out splitting; each against a plain loop-based reference."""

import pytest
import torch
from torch import nn

from otalign.training import setups
from otalign.training.models import ContrastiveModel
from otalign.training.config import Config


def reference_domain_prior(domains, alpha, beta):
    """P[i, j] over the view-blocked batch (row v * B + k): 1 for the other view of the same sample, plus alpha for
    a same-domain pair, beta for a cross-domain pair; 0 on the diagonal."""
    b = len(domains)
    P = torch.zeros(2 * b, 2 * b)
    for i in range(2 * b):
        for j in range(2 * b):
            if i == j:
                continue
            same_sample = i % b == j % b
            same_domain = domains[i % b] == domains[j % b]
            P[i, j] = float(same_sample) + (alpha if same_domain else beta)
    return P


def reference_hierarchy(levels, weights):
    b = len(levels[0])
    P = torch.zeros(2 * b, 2 * b)
    for i in range(2 * b):
        for j in range(2 * b):
            if i != j:
                P[i, j] = sum(w * float(level[i % b] == level[j % b]) for level, w in zip(levels, weights))
    return P


def test_domain_target_has_the_domain_prior_block_structure_of_the_batch():
    domains = torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])
    index = torch.tensor([6, 0, 3, 4])
    P = setups.domain_target(domains, alpha=0.3, beta=0.05)(index)
    torch.testing.assert_close(P, reference_domain_prior(domains[index].tolist(), 0.3, 0.05))


def test_hierarchical_target_matches_the_weighted_sum_of_level_indicators():
    fine = torch.tensor([0, 0, 1, 1, 2, 3])
    coarse = torch.tensor([0, 0, 0, 0, 1, 1])
    instance = torch.arange(6)
    index = torch.tensor([5, 1, 0, 2, 4])
    P = setups.hierarchical_target([instance, fine, coarse], [1.0, 0.5, 0.1])(index)
    expected = reference_hierarchy([instance[index].tolist(), fine[index].tolist(), coarse[index].tolist()],
                                   [1.0, 0.5, 0.1])
    torch.testing.assert_close(P, expected)


class Recorder(nn.Module):
    def forward(self, z0, z1, labels=None, target=None):
        self.seen = (z0.shape, target)
        return (z0 * z1).sum()


def test_a_model_with_a_rule_hands_the_rule_target_to_the_loss():
    domains = torch.tensor([0, 1, 1, 0, 2])
    rule = setups.domain_target(domains, 0.2, 0.0)
    recorder = Recorder()
    model = ContrastiveModel(nn.Linear(3, 4), nn.Identity(), recorder, rule=rule)
    index = torch.tensor([4, 2, 1])
    model(torch.randn(3, 3), torch.randn(3, 3), labels=index)
    assert recorder.seen[0] == (3, 4)
    torch.testing.assert_close(recorder.seen[1], reference_domain_prior(domains[index].tolist(), 0.2, 0.0))
    with pytest.raises(ValueError, match="labels"):
        model(torch.randn(3, 3), torch.randn(3, 3))


def test_leave_one_domain_out_partitions_by_domain():
    domains = torch.tensor([2, 0, 1, 2, 2, 0])
    train, test = setups.leave_one_domain_out(domains, 2)
    assert test.tolist() == [0, 3, 4] and train.tolist() == [1, 2, 5]
    with pytest.raises(ValueError, match="held_out"):
        setups.leave_one_domain_out(domains, 7)


def test_lodo_accuracy_is_perfect_on_separable_features():
    labels = torch.tensor([0, 1] * 12)
    domains = torch.arange(24) % 3
    features = torch.stack([labels.float() * 4 - 2, torch.zeros(24)], 1) + 0.01 * torch.randn(24, 2)
    accuracy = setups.lodo_accuracy(features, labels, domains)
    assert set(accuracy) == {0, 1, 2} and all(a == 1.0 for a in accuracy.values())


def test_train_with_target_runs_end_to_end_on_tiny_digits(tmp_path):
    pytest.importorskip("sklearn")
    from otalign.modalities import images
    from otalign.modalities.images.training import ImageViews

    x, y, _ = images.load_digits_dataset("clean", seed=0)
    x, y = x[:64], y[:64]
    config = Config(modality="images", dataset="digits", encoder="mlp", method="gca_infonce", epochs=1,
                    batch_size=32, hidden_dim=16, feature_dim=8, projection_dim=4, iterations=3, device="cpu",
                    amp=False, checkpoint_every=0, resume=False, quiet=True, out=str(tmp_path))
    instance = torch.arange(64)
    encoder = setups.train_with_target(config, x, ImageViews(images.digits_transform()),
                                       setups.hierarchical_target([instance, y], [1.0, 0.1]))
    features = setups.features_of(encoder, x)
    assert features.shape == (64, 8) and torch.isfinite(features).all()
    with pytest.raises(ValueError, match="method"):
        setups.train_with_target(config.replace(method="byol"), x, None, None)
