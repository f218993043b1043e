"""The trainer's own divergence guard and its per-epoch log lines."""

import dataclasses
import logging

import pytest
import torch

from otalign.training.config import Config
from otalign.training.data import build_networks, load_data
from otalign.training.methods import build_model
from otalign.training.rng import seed_everything
from otalign.training.trainer import Trainer

METHODS = ["infonce", "gca_infonce", "rince", "gca_rince", "gca_uot", "supcon", "ntxent", "byol", "simsiam"]


def tiny(out, **changes) -> Config:
    settings = dict(method="infonce", epochs=2, batch_size=64, subset=200, hidden_dim=32, feature_dim=16,
                    projection_dim=8, iterations=3, warmup_epochs=1, out=str(out), device="cpu", quiet=True,
                    checkpoint_every=0)
    settings.update(changes)
    return Config(**settings)


@pytest.fixture(scope="module")
def data():
    return load_data(tiny("unused"), torch.device("cpu"))


def _trainer(config, data):
    seed_everything(config.seed)
    return Trainer(config, build_model(config, *build_networks(config, data.in_shape)), data)


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_embeddings_raise_the_trainers_own_error(tmp_path, data, method):
    trainer = _trainer(tiny(tmp_path, method=method), data)
    with torch.no_grad():  # what a diverged update leaves behind
        next(trainer.model.encoder.parameters()).fill_(float("inf"))
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 1.*lower lr"):
        trainer.fit()


def test_divergence_after_some_steps_names_that_step(tmp_path, data):
    trainer = _trainer(tiny(tmp_path), data)
    steps = trainer.steps_per_epoch
    original = trainer.optimiser.step

    def step_then_poison(*args, **kwargs):
        out = original(*args, **kwargs)
        if trainer.step == steps - 1:  # the last update of epoch 1 sends a weight to NaN
            with torch.no_grad():
                next(trainer.model.encoder.parameters()).view(-1)[0] = float("nan")
        return out

    trainer.optimiser.step = step_then_poison
    with pytest.raises(FloatingPointError, match=rf"epoch 2, step {steps + 1}\b"):
        trainer.fit()
    assert trainer.epoch == 1


def test_non_finite_inputs_are_named_as_such(tmp_path, data):
    def nan_views(x, generator):
        x0, x1 = data.views(x, generator)
        return torch.full_like(x0, float("nan")), x1

    trainer = _trainer(tiny(tmp_path), dataclasses.replace(data, views=nan_views))
    with pytest.raises(FloatingPointError, match=r"training batch"):
        trainer.fit()


def test_one_log_line_per_epoch_when_not_a_terminal(tmp_path, data, caplog):
    trainer = _trainer(tiny(tmp_path, quiet=False, epochs=3), data)
    with caplog.at_level(logging.INFO, logger="otalign"):
        trainer.fit()
    lines = [r for r in caplog.records if r.name == "otalign.training.trainer"]
    assert [r.levelno for r in lines] == [logging.INFO] * 3
    for epoch, (record, history) in enumerate(zip(lines, trainer.history), 1):
        message = record.getMessage()
        assert f"epoch {epoch}/3" in message and f"{history['loss']:.4f}" in message


def test_quiet_runs_log_epochs_at_debug_only(tmp_path, data, caplog):
    trainer = _trainer(tiny(tmp_path, quiet=True), data)
    with caplog.at_level(logging.DEBUG, logger="otalign"):
        trainer.fit()
    assert [r.levelno for r in caplog.records if r.name == "otalign.training.trainer"] == [logging.DEBUG] * 2


def test_a_terminal_gets_the_bar_not_the_lines(tmp_path, data, caplog, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    trainer = _trainer(tiny(tmp_path, quiet=False), data)
    with caplog.at_level(logging.INFO, logger="otalign"):
        trainer.fit()
    assert [r for r in caplog.records if r.name == "otalign.training.trainer" and r.levelno >= logging.INFO] == []
