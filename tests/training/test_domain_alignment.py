"""The domain-alignment term: its value against the divergence computed by hand, the trainer and CLI wiring
(tiny runs), the config's checks and the warnings for settings that would be ignored."""

from __future__ import annotations

import importlib
import json
import warnings

import pytest
import torch
from torch.nn import functional

from otalign.cli import main
from otalign.losses import SinkhornDivergence
from otalign.training.config import Config
from otalign.training.domain_alignment import LAZY, DomainAlignment, domain_alignment_term

TINY = ["--epochs", "2", "--subset", "200", "--batch-size", "64", "--hidden-dim", "32", "--feature-dim", "16",
        "--projection-dim", "8", "--device", "cpu", "--quiet"]


def _available(kind: str) -> bool:
    module, attribute = LAZY[kind]
    try:
        return hasattr(importlib.import_module(module), attribute)
    except ImportError:
        return False


def test_sinkhorn_term_is_the_weighted_mean_over_domain_pairs():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    domains = torch.tensor([0] * 12 + [1] * 10 + [2] * 7 + [3])  # domain 3 has one sample: left out
    term = DomainAlignment("sinkhorn", 0.7)(features, domains)
    unit = functional.normalize(features.float(), dim=-1)
    loss = SinkhornDivergence(p=2, blur=0.1)
    groups = [unit[domains == d] for d in range(3)]
    expected = 0.7 * torch.stack([loss(groups[0], groups[1]), loss(groups[0], groups[2]),
                                  loss(groups[1], groups[2])]).mean()
    torch.testing.assert_close(term, expected)


def test_term_has_a_gradient_and_is_zero_with_one_domain():
    features = torch.randn(20, 4, requires_grad=True)
    DomainAlignment("sinkhorn", 1.0)(features, torch.arange(20) % 2).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    assert DomainAlignment("sinkhorn", 1.0)(features, torch.zeros(20, dtype=torch.long)) == 0


def test_config_checks():
    with pytest.raises(ValueError, match="domain_alignment"):
        Config(domain_alignment="wasserstein")
    with pytest.raises(ValueError, match="domain_weight"):
        Config(domain_weight=-1.0)


def test_weight_without_alignment_warns_and_no_domains_is_an_error():
    with pytest.warns(UserWarning, match="domain_weight: set without domain_alignment"):
        assert domain_alignment_term(Config(domain_weight=0.5), ("domain",)) is None
    with pytest.raises(ValueError, match="domain_alignment: dataset 'digits' has no domains"):
        domain_alignment_term(Config(dataset="digits", domain_alignment="sinkhorn"), ())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        term = domain_alignment_term(Config(domain_alignment="sinkhorn"), ("domain",))
    assert term.weight == 1.0


@pytest.mark.slow
def test_cli_trains_with_the_sinkhorn_term_and_fingerprints_it(tmp_path, capsys):
    out = tmp_path / "aligned"
    assert main(["train", "--dataset", "digits-domains", "--method", "infonce", "--domain-alignment", "sinkhorn",
                 "--domain-weight", "0.5", "--held-out-domain", "2", "--out", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["domain_alignment"] == "sinkhorn" and results["config"]["domain_weight"] == 0.5
    assert all(record["domain_alignment"] >= 0 for record in results["history"])
    assert results["evaluation"]["held_out_domain_id"] == 2 and "held_out_domain" in results["evaluation"]
    fingerprint = json.loads((out / "run.json").read_text())["config"]
    assert fingerprint["domain_alignment"] == "sinkhorn" and fingerprint["domain_weight"] == 0.5
    # resuming the folder with another weight is refused, naming the setting
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "digits-domains", "--method", "infonce", "--domain-alignment", "sinkhorn",
              "--domain-weight", "0.25", "--held-out-domain", "2", "--out", str(out), *TINY])
    assert "setting domain_weight: 0.5 -> 0.25" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_refuses_alignment_on_a_dataset_without_domains(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "digits", "--domain-alignment", "sinkhorn", "--out", str(tmp_path / "x"), *TINY])
    assert exit_info.value.code == 2
    assert "domain_alignment: dataset 'digits' has no domains" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sliced", "gaussian"])
def test_other_kinds_train_when_available(tmp_path, kind):
    if not _available(kind):
        pytest.skip(f"{'.'.join(LAZY[kind])} is not in this tree")
    out = tmp_path / kind
    assert main(["train", "--dataset", "digits-domains", "--method", "infonce", "--domain-alignment", kind,
                 "--out", str(out), *TINY]) == 0
    history = json.loads((out / "results.json").read_text())["history"]
    assert all(torch.isfinite(torch.tensor(record["domain_alignment"])) for record in history)


@pytest.mark.parametrize("kind", ["sliced", "gaussian"])
def test_other_kinds_name_the_missing_function(kind):
    if _available(kind):
        pytest.skip("available: nothing is missing")
    with pytest.raises(ValueError, match=LAZY[kind][1]):
        DomainAlignment(kind, 1.0)
