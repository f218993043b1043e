"""Target plans chosen in the config: built-in rules, custom callables, and errors for settings that would be
ignored."""

import pytest
import torch

from otalign import targets
from otalign.training.config import Config
from otalign.training.methods import build_model, check_settings
from otalign.training.target_rules import target_rule

LABELS = torch.tensor([0, 1, 1, 2])
META = {"domain": torch.tensor([0, 0, 1, 1]), "coarse": torch.tensor([0, 1, 1, 1])}


def custom_target(labels, domains, n_views):
    """A module-level callable for ``--target tests.training.test_target_rules:custom_target``."""
    return targets.from_labels(labels, n_views) + 0.5 * targets.domain_prior(domains, 1.0, 0.0, n_views)


def wrong_shape(labels, domains, n_views):
    return torch.zeros(3, 3)


def test_pairing_is_the_loss_default_and_labels_is_from_labels():
    assert target_rule(Config()) is None
    rule = target_rule(Config(target="labels"))
    torch.testing.assert_close(rule(LABELS, META, 2), targets.from_labels(LABELS, 2))


def test_domain_prior_reads_the_batch_domains():
    rule = target_rule(Config(target="domain-prior", alpha=0.3, beta=0.1), ("domain",))
    torch.testing.assert_close(rule(LABELS, META, 2), targets.domain_prior(META["domain"], 0.3, 0.1, 2))
    assert rule.identity == "domain-prior(alpha=0.3, beta=0.1)"
    with pytest.raises(ValueError, match="target: 'domain-prior' needs a dataset with domains"):
        target_rule(Config(target="domain-prior", alpha=0.3), ())


def test_hierarchical_levels_by_name():
    config = Config(target="hierarchical", levels="instance,label,coarse", weights="1,0.5,0.1")
    rule = target_rule(config, ("domain", "coarse"))
    expected = targets.hierarchical([torch.arange(4), LABELS, META["coarse"]], [1.0, 0.5, 0.1], 2)
    torch.testing.assert_close(rule(LABELS, META, 2), expected)
    with pytest.raises(ValueError, match="levels: unknown level 'fine'"):
        target_rule(Config(target="hierarchical", levels="fine", weights="1"), ())
    with pytest.raises(ValueError, match="one weight per level"):
        target_rule(Config(target="hierarchical", levels="instance,label", weights="1"), ())


def test_custom_callable_by_module_and_name():
    rule = target_rule(Config(target="tests.training.test_target_rules:custom_target"), ("domain",))
    torch.testing.assert_close(rule(LABELS, META, 2), custom_target(LABELS, META["domain"], 2))
    assert rule.identity.startswith("tests.training.test_target_rules:custom_target@")
    with pytest.raises(ValueError, match=r"returned \(3, 3\) .* expected a \(8, 8\)"):
        target_rule(Config(target="tests.training.test_target_rules:wrong_shape"))
    with pytest.raises(ValueError, match="custom_target raised TypeError: domains"):  # a dataset without domains
        target_rule(Config(target="tests.training.test_target_rules:custom_target"))
    with pytest.raises(ValueError, match="target: cannot import"):
        target_rule(Config(target="no_such_module_xyz:f"))


def test_settings_a_target_or_method_would_ignore_are_errors():
    with pytest.raises(ValueError, match="alpha: only used with --target domain-prior"):
        target_rule(Config(alpha=0.5))
    with pytest.raises(ValueError, match="weights: only used with --target hierarchical"):
        target_rule(Config(target="labels", weights="1"))
    with pytest.raises(ValueError, match="target: method 'byol' cannot use --target labels"):
        check_settings(Config(method="byol", target="labels"))
    with pytest.raises(ValueError, match="target: method 'supcon' cannot use --target domain-prior"):
        check_settings(Config(method="supcon", target="domain-prior", alpha=1.0))
    with pytest.raises(ValueError, match="solver: method 'ntxent' solves no transport plan"):
        check_settings(Config(method="ntxent", solver="proximal"))
    with pytest.warns(UserWarning, match="rho: not used by method 'infonce'"):
        check_settings(Config(method="infonce", rho=0.3))
    with pytest.raises(ValueError, match="target: expected one of"):
        target_rule(Config(target="nonsense"))


def test_the_model_gets_the_rule_and_the_loss_the_solver():
    config = Config(method="gca_infonce", target="labels", solver="proximal", solver_options={"inner_iter": 2},
                    projection_dim=4, hidden_dim=8)
    encoder, projector = torch.nn.Linear(6, 5), torch.nn.Linear(5, 4)
    model = build_model(config, encoder, projector)
    assert model.rule.identity == "labels" and model.criterion.aligner.solver.name == "proximal"
    assert model.criterion.aligner.solver.inner_iter == 2
    loss = model(torch.randn(6, 6), torch.randn(6, 6), labels=torch.tensor([0, 0, 1, 1, 2, 2]), meta={})
    assert torch.isfinite(loss)


def negative(labels, domains, n_views):
    return -targets.paired(labels.shape[0], n_views)


def all_zero(labels, domains, n_views):
    return torch.zeros(n_views * labels.shape[0], n_views * labels.shape[0])


def with_nan(labels, domains, n_views):
    out = targets.paired(labels.shape[0], n_views)
    out[0, 1] = float("nan")
    return out


def with_inf(labels, domains, n_views):
    out = targets.paired(labels.shape[0], n_views)
    out[0, 1] = float("inf")
    return out


def with_diagonal(labels, domains, n_views):
    return torch.ones(n_views * labels.shape[0], n_views * labels.shape[0], dtype=torch.int64)


def integer_pairs(labels, domains, n_views):
    return targets.paired(labels.shape[0], n_views).to(torch.int64)


def raises(labels, domains, n_views):
    raise KeyError("no such class")


def not_a_tensor(labels, domains, n_views):
    return [[0.0]]


NOT_CALLABLE = 3


@pytest.mark.parametrize("name, message", [
    ("negative", "returned negative entries"),
    ("all_zero", "returned an all-zero target"),
    ("with_nan", "returned NaN or inf"),
    ("with_inf", "returned NaN or inf"),
    ("with_diagonal", "returned a non-zero diagonal"),
    ("raises", "raised KeyError: 'no such class'"),
    ("not_a_tensor", "returned list"),
    ("NOT_CALLABLE", "must name a function"),
])
def test_a_bad_custom_target_is_refused_before_training_naming_the_flag(name, message):
    with pytest.raises(ValueError, match="--target tests.training.test_target_rules:" + name + ".*" + message):
        target_rule(Config(target=f"tests.training.test_target_rules:{name}"))


def test_an_integer_custom_target_is_read_as_float_as_the_library_does():
    rule = target_rule(Config(target="tests.training.test_target_rules:integer_pairs"))
    out = rule(LABELS, META, 2)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, targets.paired(4, 2))


def test_checks_run_on_every_batch_even_inside_trusted_training_steps():
    from otalign.checks import trusted

    from otalign.training.target_rules import checked_custom_target

    with trusted(), pytest.raises(ValueError, match="--target x:y returned negative entries"):
        checked_custom_target(-custom_target(LABELS, META["domain"], 2), "--target x:y", 4, 2)


def test_a_module_in_the_current_folder_is_found(tmp_path, monkeypatch):
    (tmp_path / "my_cwd_targets.py").write_text(
        "from otalign import targets\n"
        "def pairs(labels, domains, n_views):\n"
        "    return targets.paired(labels.shape[0], n_views)\n")
    monkeypatch.chdir(tmp_path)
    rule = target_rule(Config(target="my_cwd_targets:pairs"))
    torch.testing.assert_close(rule(LABELS, META, 2), targets.paired(4, 2))
    with pytest.raises(ValueError, match="searched in the current folder"):
        target_rule(Config(target="my_cwd_targets_missing:pairs"))
