"""Config.validate: every numeric field finite and in range, named in the error."""

import math

import pytest

from otalign.training.config import FIELDS, Config, config_from_dict, load_config

FLOAT_FIELDS = [name for name, f in FIELDS.items() if "float" in str(f.type)]
INT_FIELDS = [name for name, f in FIELDS.items() if "int" in str(f.type)]
INF_ALLOWED = {"rho"}  # rho = inf is the balanced problem


def test_the_tables_cover_the_numeric_fields():
    assert {"lr", "weight_decay", "momentum", "temperature", "rho"} <= set(FLOAT_FIELDS)
    assert {"seed", "epochs", "batch_size", "iterations"} <= set(INT_FIELDS)


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_float_field_rejects_nan_and_inf(name, bad):
    if bad == math.inf and name in INF_ALLOWED:
        assert getattr(Config(**{name: bad}), name) == math.inf
        return
    with pytest.raises(ValueError, match=rf"^{name}: "):
        Config(**{name: bad})
    with pytest.raises(ValueError, match=rf"^{name}: "):
        config_from_dict({name: bad})


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_every_int_field_rejects_negatives_floats_and_bools(name, bad):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        Config(**{name: bad})


@pytest.mark.parametrize(
    "values, name",
    [
        ({"lr": 1e30}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1e-3}, "weight_decay"),
        ({"weight_decay": 5.0}, "weight_decay"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"temperature": 1e-320}, "temperature"),  # 1 / temperature overflows
        ({"seed": 2**70}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"rho": 0.0}, "rho"),
        ({"q": 0.0}, "q"),
        ({"lam": -1.0}, "lam"),
        ({"r1": -1.0}, "r1"),
    ],
)
def test_out_of_range_values_name_the_field(values, name):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        Config(**values)


def test_boundary_values_are_accepted():
    Config(seed=2**63 - 1, lr=10.0, weight_decay=0.0, momentum=0.0, rho=math.inf, q=1.0, r1=0.0)


def test_syntax_errors_name_the_file(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('method = "infonce\n')
    with pytest.raises(ValueError, match="run.toml"):
        load_config(toml)
    json_file = tmp_path / "run.json"
    json_file.write_text("{'method': 1}")
    with pytest.raises(ValueError, match="run.json"):
        load_config(json_file)
