import json

import pytest

from otalign.training.config import Config, config_from_dict, load_config


def test_defaults_and_replace():
    config = Config()
    assert config.method == "infonce" and config.epochs > 0
    changed = config.replace(method="gca_uot", rho=0.3)
    assert changed.method == "gca_uot" and changed.rho == 0.3 and config.method == "infonce"


def test_json_file_then_overrides(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"method": "rince", "epochs": 3, "lr": 1, "q": 0.5}))
    config = load_config(path, overrides={"epochs": 7, "seed": None, "temperature": 0.2})
    assert config.method == "rince" and config.q == 0.5
    assert config.epochs == 7  # the override wins
    assert config.seed == Config().seed  # None means "not given"
    assert config.lr == 1.0 and isinstance(config.lr, float)  # an int in the file is accepted for a float
    assert config.temperature == 0.2


def test_toml_file_top_level_and_train_table(tmp_path):
    flat = tmp_path / "flat.toml"
    flat.write_text('method = "gca_uot"\nrho = 0.2\ncorrupt_severity = 3\namp = false\n')
    table = tmp_path / "table.toml"
    table.write_text('[train]\nmethod = "byol"\nepochs = 2\n')
    a, b = load_config(flat), load_config(table)
    assert (a.method, a.rho, a.corrupt_severity, a.amp) == ("gca_uot", 0.2, 3, False)
    assert (b.method, b.epochs) == ("byol", 2)


def test_loss_kwargs_only_set_values():
    config = Config(temperature=0.3, iterations=5)
    assert config.loss_kwargs == {"temperature": 0.3, "iterations": 5}


@pytest.mark.parametrize(
    "values, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"optimiser": "rmsprop"}, "optimiser"),
        ({"corrupt_severity": 9}, "corrupt_severity"),
        ({"corrupt_view": "third"}, "corrupt_view"),
        ({"temperature": -1.0}, "temperature"),
        ({"epochs": "ten"}, "epochs"),
        ({"amp": 1}, "amp"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_values_name_the_field(values, name):
    with pytest.raises(ValueError, match=name):
        config_from_dict(values)


def test_bad_file(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_config(tmp_path / "missing.toml")
    other = tmp_path / "run.yaml"
    other.write_text("method: infonce")
    with pytest.raises(ValueError, match="json or .toml"):
        load_config(other)
