"""Per-domain evaluation: domain probe, in-domain and held-out-domain class accuracy."""

import torch

from otalign.training.domain_eval import domain_evaluation


def features(n_per: int, seed: int):
    """The domain in feature 1; the class in feature 0 for domains 0 and 1, in feature 2 for domain 2 (so what is
    learned on the other domains does not transfer to domain 2)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(3 * n_per) % 2
    domains = torch.arange(3 * n_per) // n_per
    signed = (2 * labels - 1) * 3.0
    f = torch.stack([signed * (domains != 2), domains.float() * 3.0, signed * (domains == 2)], 1)
    return f + 0.1 * torch.randn(f.shape, generator=gen), labels, domains


def test_domain_numbers_on_constructed_features():
    train_f, train_y, train_d = features(40, 0)
    test_f, test_y, test_d = features(20, 1)
    result = domain_evaluation(train_f, train_y, train_d, test_f, test_y, test_d)
    assert result["domain_probe"] > 0.95
    for d in range(3):
        assert result[f"in_domain/{d}"] > 0.95
    assert result["cross_domain/0"] > 0.95 and result["cross_domain/1"] > 0.95
    assert result["cross_domain/2"] < 0.75  # its class lives in a feature the other domains leave at 0
    assert "held_out_domain" not in result  # no domain was held out of training
    assert abs(result["in_domain"] - sum(result[f"in_domain/{d}"] for d in range(3)) / 3) < 1e-12
    assert all(isinstance(value, float) for value in result.values())


def test_held_out_domain_is_the_never_seen_domain_alone():
    train_f, train_y, train_d = features(40, 0)
    test_f, test_y, test_d = features(20, 1)
    result = domain_evaluation(train_f, train_y, train_d, test_f, test_y, test_d, held_out=2)
    assert result["held_out_domain"] == result["cross_domain/2"] and result["held_out_domain_id"] == 2.0
    assert result["seen_domains_cross_domain"] == (result["cross_domain/0"] + result["cross_domain/1"]) / 2
    assert result["held_out_domain"] < 0.75 < result["seen_domains_cross_domain"]  # never mixed
