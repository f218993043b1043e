import random

import numpy as np
import pytest
import torch

from otalign.training import checkpoint, rng


def test_save_atomic_round_trip_with_weights_only(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3, "history": [{"loss": 1.5}],
             "rng": rng.capture()}
    path = checkpoint.save_atomic(state, tmp_path / "ck.pt")
    loaded = torch.load(path, weights_only=True)  # plain torch.load with the safe unpickler
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["epoch"] == 3 and loaded["history"] == [{"loss": 1.5}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no temporary left behind


def test_failed_write_keeps_the_old_checkpoint_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoint.save_atomic({"epoch": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        checkpoint.save_atomic({"epoch": 2, "bad": Unpicklable()}, path)
    assert checkpoint.load(path) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"obj": random.Random(0)}, path)
    with pytest.raises(Exception):
        checkpoint.load(path)


def test_rng_capture_restore_reproduces_every_stream():
    rng.seed_everything(123)
    state = rng.capture()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.rand(5), np.random.rand(5), random.random()  # move every stream on
    rng.restore(state)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    rng.seed_everything(5)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)
    checkpoint.save_atomic({"rng": rng.capture()}, tmp_path / "r.pt")
    expected = (torch.rand(2), np.random.randn(2), random.gauss(0, 1))
    rng.restore(checkpoint.load(tmp_path / "r.pt")["rng"])
    got = (torch.rand(2), np.random.randn(2), random.gauss(0, 1))
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_derived_seed_is_deterministic_and_distinct():
    assert rng.derived_seed(0, 1) == rng.derived_seed(0, 1)
    assert len({rng.derived_seed(0, e) for e in range(50)} | {rng.derived_seed(1, 0)}) == 51
    assert 0 <= rng.derived_seed(2**40, 3) < 2**63
