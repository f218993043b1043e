"""Checkpoint files that cannot lie: unreadable ones are named, orphaned temporaries are cleaned up."""

import pytest
import torch

from otalign.training import checkpoint
from otalign.training.config import Config
from otalign.training.data import load_data
from otalign.training.experiment import train
from otalign.training.trainer import CHECKPOINT


def tiny(out, **changes) -> Config:
    settings = dict(method="infonce", epochs=2, batch_size=64, subset=200, hidden_dim=32, feature_dim=16,
                    projection_dim=8, warmup_epochs=1, out=str(out), device="cpu", quiet=True)
    settings.update(changes)
    return Config(**settings)


@pytest.fixture(scope="module")
def data():
    return load_data(tiny("unused"), torch.device("cpu"))


def _truncated(path):
    checkpoint.save_atomic({"epoch": 1, "weights": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])


def _not_a_dict(path):
    checkpoint.save_atomic([torch.zeros(2)], path)


CORRUPTIONS = {
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(b"\x80\x04\x95garbage that is not a pickle"),
    "text": lambda path: path.write_text("hello"),
    "truncated": _truncated,
    "not a dict": _not_a_dict,
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_an_unreadable_checkpoint_is_named(tmp_path, kind):
    path = tmp_path / CHECKPOINT
    CORRUPTIONS[kind](path)
    with pytest.raises(ValueError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert str(path) in message and "resume=False" in message and "another" in message


def _without_optimiser(path):
    state = checkpoint.load(path)
    del state["optimiser"]
    checkpoint.save_atomic(state, path)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS) + ["missing entry"])
def test_the_trainer_names_a_bad_checkpoint_on_resume(tmp_path, data, kind):
    train(tiny(tmp_path), data, stop_after=1)  # a run's folder, then its checkpoint goes bad
    path = tmp_path / CHECKPOINT
    (CORRUPTIONS.get(kind) or _without_optimiser)(path)
    with pytest.raises(ValueError) as info:
        train(tiny(tmp_path), data)
    assert str(path) in str(info.value) and "resume=False" in str(info.value)
    assert train(tiny(tmp_path, resume=False), data).epoch == 2  # the suggested way out works


def _orphan(folder, name, stem="checkpoint.pt"):
    path = folder / f".{stem}.{name}.tmp"
    path.write_bytes(b"x" * 100)
    return path


def test_orphaned_temporaries_of_this_checkpoint_are_removed_others_kept(tmp_path):
    orphans = [_orphan(tmp_path, "abc_1234"), _orphan(tmp_path, "z9y8x7w6")]
    keep = [
        _orphan(tmp_path, "abc_1234", stem="other.pt"),  # another file's temporary
        _orphan(tmp_path, "notmkstemp"),  # not a name mkstemp makes
        tmp_path / "checkpoint.pt.tmp",
        tmp_path / "notes.txt",
    ]
    for path in keep[2:]:
        path.write_text("mine")
    checkpoint.save_atomic({"epoch": 1}, tmp_path / CHECKPOINT)
    assert not any(path.exists() for path in orphans)
    assert all(path.exists() for path in keep)
    assert checkpoint.load(tmp_path / CHECKPOINT)["epoch"] == 1


def test_a_new_run_cleans_up_after_a_killed_one(tmp_path, data):
    orphan = _orphan(tmp_path, "k1ll3d_0")
    train(tiny(tmp_path, epochs=1), data)
    assert not orphan.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
