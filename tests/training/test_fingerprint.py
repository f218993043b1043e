"""Resume that cannot lie: a checkpoint or a folder of another run (settings, data, target rule) is refused with
what differs; a resume says so; multi-run helpers give every run its own folder."""

import json

import pytest
import torch
from torch import nn

from otalign.training import Config, TensorData, setups
from otalign.training.fingerprint import data_identity, differences, run_fingerprint
from otalign.training.models import ContrastiveModel
from otalign.training.trainer import CHECKPOINT, RUN_FILE, Trainer
from otalign.losses import GCAInfoNCE


class Jitter:
    def __call__(self, x, generator):
        return x + 0.1 * torch.randn(x.shape, generator=generator), x + 0.1 * torch.randn(x.shape, generator=generator)


def tiny_data(shift: float = 0.0) -> TensorData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 5, generator=gen) + shift
    y = torch.arange(24) % 3
    return TensorData(x, y, x[:6], y[:6], Jitter(), (5,))


def trainer(tmp_path, data=None, rule=None, **changes) -> Trainer:
    config = Config(out=str(tmp_path), epochs=2, batch_size=8, device="cpu", amp=False, quiet=True, warmup_epochs=0,
                    **changes)
    torch.manual_seed(0)
    model = ContrastiveModel(nn.Linear(5, 4), nn.Linear(4, 3), GCAInfoNCE(iterations=2), rule=rule)
    return Trainer(config, model, data or tiny_data())


def test_resume_prints_where_and_from_which_epoch(tmp_path, capsys):
    trainer(tmp_path).fit(stop_after=1)
    resumed = trainer(tmp_path)
    resumed.fit()
    assert f"resuming {tmp_path} from epoch 1" in capsys.readouterr().err
    assert resumed.epoch == 2


@pytest.mark.parametrize("case", ["setting", "data", "rule"])
def test_another_run_is_refused_naming_what_differs(tmp_path, case):
    trainer(tmp_path, rule=setups.domain_target(torch.arange(24) % 2, 0.1, 0.0)).fit(stop_after=1)
    if case == "setting":
        other = trainer(tmp_path, rule=setups.domain_target(torch.arange(24) % 2, 0.1, 0.0), lr=1e-3)
        expected = "setting lr: 0.002 -> 0.001"
    elif case == "data":
        other = trainer(tmp_path, data=tiny_data(shift=1.0), rule=setups.domain_target(torch.arange(24) % 2, 0.1, 0))
        expected = "data: "
    else:
        other = trainer(tmp_path, rule=setups.domain_target(torch.arange(24) % 2, 0.5, 0.0))
        expected = "target: 'domain-prior(alpha=0.1"
    with pytest.raises(ValueError, match="belongs to another run") as error:
        other.fit()
    assert expected in str(error.value)


def test_a_folder_without_checkpoints_is_still_claimed(tmp_path):
    """checkpoint_every=0 writes no checkpoint: another run in that folder must still not overwrite the files."""
    trainer(tmp_path, checkpoint_every=0).fit(stop_after=1)
    assert json.loads((tmp_path / RUN_FILE).read_text())["config"]
    with pytest.raises(ValueError, match="setting seed: 0 -> 1"):
        trainer(tmp_path, checkpoint_every=0, seed=1).fit()


def test_an_old_checkpoint_without_fingerprint_is_refused(tmp_path):
    first = trainer(tmp_path)
    first.fit(stop_after=1)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    del state["fingerprint"]
    torch.save(state, tmp_path / CHECKPOINT)
    with pytest.raises(ValueError, match="belongs to another run"):
        trainer(tmp_path).load(tmp_path / CHECKPOINT)


def test_fingerprint_parts_and_differences():
    config, data = Config(), tiny_data()
    model = ContrastiveModel(nn.Linear(5, 4), nn.Linear(4, 3), GCAInfoNCE())
    base = run_fingerprint(config, data, model)
    assert set(base) == {"config", "data", "target", "code"}
    assert run_fingerprint(config.replace(out="elsewhere", quiet=True), data, model) == base  # resumable changes
    assert differences(base, base) == []
    assert data_identity(config, data) != data_identity(config, tiny_data(shift=1e-6))


def test_leave_one_domain_out_runs_each_fold_in_its_own_folder(tmp_path, monkeypatch):
    seen = []

    def fake_train(config, x, views, rule, in_shape=None, inputs=None):
        seen.append(config.out)
        return nn.Identity()

    monkeypatch.setattr(setups, "train_with_target", fake_train)
    domains = torch.arange(12) % 3
    x, y = torch.randn(12, 4), torch.arange(12) % 2
    setups.leave_one_domain_out_run(Config(out=str(tmp_path)), x, y, domains, Jitter())
    assert seen == [str(tmp_path / f"fold-{d}") for d in range(3)]


def test_run_json_config_is_an_object_and_old_string_configs_still_compare():
    import json as _json

    current = {"config": {"lr": 0.002, "seed": 0}, "data": "d", "target": "t", "code": "c"}
    saved_old = {**current, "config": _json.dumps({"lr": 0.001, "seed": 0})}  # the format of earlier versions
    assert differences(saved_old, current) == ["setting lr: 0.001 -> 0.002"]
    assert differences({**current, "config": _json.dumps(current["config"])}, current) == []
