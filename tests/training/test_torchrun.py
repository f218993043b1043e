import json
import os
import socket
import subprocess
import sys

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_training_under_torchrun(tmp_path):
    """``torchrun --nproc_per_node=2 -m otalign.cli train`` on CPU (gloo): both ranks train on their shards, the
    loss gathers the global batch, only rank 0 writes files, and nobody hangs (evaluation and the plan figure run
    on rank 0 alone)."""
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "-m", "otalign.cli", "train", "--method", "gca_uot", "--epochs", "2", "--subset", "256", "--batch-size",
        "64", "--hidden-dim", "32", "--feature-dim", "16", "--projection-dim", "8", "--iterations", "3",
        "--device", "cpu", "--quiet", "--out", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert len(results["history"]) == 2 and 0 <= results["evaluation"]["probe_few"] <= 1
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (out / "plan.png").is_file() and (out / "checkpoint.pt").is_file()
    assert done.stdout.count('"probe_few"') == 1  # rank 1 prints nothing
