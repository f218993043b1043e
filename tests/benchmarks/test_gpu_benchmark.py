"""The GPU benchmark script waits for a GPU session; a smoke run on the CPU keeps it working meanwhile."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_on_cpu(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--kernels", "auto", "blocked", "dense",
                    "--out", str(tmp_path)], check=True,
                   capture_output=True, text=True, timeout=600)
    data = json.loads((tmp_path / "gpu.json").read_text())
    report = (tmp_path / "gpu.md").read_text()
    assert "Failed" not in report
    kernels = {record["kernel"] for record in data["softmin"]}
    assert kernels == {"auto", "blocked", "dense"}  # compiling the fourth would take most of a minute here
    assert all(math.isfinite(record["iteration_ms"]) and record["stream_ms"] > 0 for record in data["softmin"])
    peers = data["peers"][0]["ms_per_iter"]
    assert all(math.isfinite(peers[name]) for name in ("otalign", "POT sinkhorn_log", "geomloss tensorized"))
    assert 0 < data["step"]["GCAInfoNCE"]["loss_share"] < 1
