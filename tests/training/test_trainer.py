import json

import pytest
import torch

from otalign.training import checkpoint
from otalign.training.config import Config
from otalign.training.data import load_data
from otalign.training.experiment import train
from otalign.training.trainer import CHECKPOINT, METRICS


def tiny(method: str, out, **changes) -> Config:
    settings = dict(method=method, epochs=3, batch_size=64, subset=200, hidden_dim=32, feature_dim=16,
                    projection_dim=8, iterations=3, warmup_epochs=1, out=str(out), device="cpu", quiet=True,
                    corrupt_severity=5, corrupt_fraction=0.5)
    settings.update(changes)
    return Config(**settings)


@pytest.fixture(scope="module")
def data():
    return load_data(tiny("infonce", "unused"), torch.device("cpu"))


@pytest.mark.parametrize("method", ["gca_uot", "byol"])
def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path, data, method):
    straight = train(tiny(method, tmp_path / "a"), data)

    stopped = train(tiny(method, tmp_path / "b"), data, stop_after=1)
    assert stopped.epoch == 1 and (tmp_path / "b" / CHECKPOINT).is_file()
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it
    resumed = train(tiny(method, tmp_path / "b"), data)
    assert resumed.epoch == 3

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["loss"] for r in straight.history] == [r["loss"] for r in resumed.history]
    lines = (tmp_path / "b" / METRICS).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # no duplicated epochs after resuming


def test_checkpoint_is_weights_only_and_complete(tmp_path, data):
    trainer = train(tiny("infonce", tmp_path, epochs=2, checkpoint_every=1), data)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 2 and state["step"] == trainer.step
    assert set(state) >= {"model", "optimiser", "scheduler", "scaler", "rng", "history", "config"}
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(state["model"][key], value)
    assert [r["loss"] for r in state["history"]] == [r["loss"] for r in trainer.history]


def test_resume_refuses_a_different_config(tmp_path, data):
    train(tiny("infonce", tmp_path), data, stop_after=1)
    with pytest.raises(ValueError, match="lr"):
        train(tiny("infonce", tmp_path, lr=0.5), data)
    # a setting that cannot change the result may differ
    assert train(tiny("infonce", tmp_path, quiet=False), data).epoch == 3


def test_schedule_reaches_zero_and_losses_are_finite(tmp_path, data):
    trainer = train(tiny("gca_rince", tmp_path, checkpoint_every=0), data)
    assert trainer.step == trainer.total_steps == 3 * (200 // 64)
    assert trainer.optimiser.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in trainer.history)
    assert not (tmp_path / CHECKPOINT).exists()  # checkpoint_every=0 and not stopped early


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, data, monkeypatch):
    trainer = train(tiny("infonce", tmp_path, epochs=2), data, stop_after=1)
    before = checkpoint.load(tmp_path / CHECKPOINT)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save(tmp_path / CHECKPOINT)
    after = checkpoint.load(tmp_path / CHECKPOINT)
    assert after["epoch"] == before["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_trainer_resolves_its_device_from_the_config(tmp_path, data):
    from otalign.training.data import build_networks
    from otalign.training.methods import build_model
    from otalign.training.trainer import Trainer

    config = tiny("infonce", tmp_path, epochs=1, checkpoint_every=0)
    model = build_model(config, *build_networks(config, data.in_shape))
    trainer = Trainer(config, model, data)  # no info, no device: one process on config.device
    assert trainer.device == torch.device("cpu") and trainer.amp_dtype is None
    assert len(trainer.fit()) == 1
