"""The domain-adaptation benchmark's smoke run (1 seed, small data, 1 epoch) writes every table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "adapt.py"


@pytest.mark.slow
def test_adapt_benchmark_smoke_run(tmp_path):
    pytest.importorskip("ot")
    out = tmp_path / "adapt.md"
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], check=True, capture_output=True,
                   text=True, timeout=600)
    report = out.read_text()
    assert report.count("| otalign SinkhornTransport |") == 4  # three digits shifts and BasicMotions
    accuracies = [float(v) for v in re.findall(r"\| (0\.\d{3}|1\.000) ", report)]
    assert accuracies and all(0 <= v <= 1 for v in accuracies)
    gaps = [float(v) for v in re.findall(r"\| (\d\.\de[-+]\d\d) \|", report)]
    assert len(gaps) == 4 and max(gaps) < 1e-4  # POT and otalign fit the same coupling
