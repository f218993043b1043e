"""A training process killed with SIGKILL in the middle of an epoch resumes from its last checkpoint and ends with
the same weights and metrics as an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("torchvision")

ARGS = ["--modality", "images", "--dataset", "digits", "--method", "gca_infonce", "--encoder", "mlp", "--epochs", "4",
        "--subset", "768", "--batch-size", "32", "--seed", "3", "--quiet", "--device", "cpu", "--eval-draws", "1"]


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "otalign.cli", "train", *ARGS, "--out", str(out)]


def environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - absent, or being replaced right now
        return 0


def results(out: Path):
    """results.json without wall-clock times and without the output folder, which differ between the runs."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if "second" not in k and k != "out"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads((out / "results.json").read_text()))


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    straight = tmp_path / "straight"
    subprocess.run(command(straight), check=True, env=environment(), capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while checkpoint_epoch(killed / "checkpoint.pt") < 1:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # now inside epoch 2: no chance to save anything
    process.wait(timeout=60)
    assert checkpoint_epoch(killed / "checkpoint.pt") < 4
    assert not (killed / "results.json").exists()

    subprocess.run(command(killed), check=True, env=environment(), capture_output=True, timeout=600)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert results(straight) == results(killed)
