"""The toolbox benchmark's smoke run (small sizes) writes its table, every row with a speed-up and a small
difference from POT."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "toolbox.py"


@pytest.mark.slow
def test_toolbox_benchmark_smoke_run(tmp_path):
    pytest.importorskip("ot")
    out = tmp_path / "toolbox.md"
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--repeats", "1", "--output", str(out)], check=True,
                   capture_output=True, text=True, timeout=600)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "problem" not in line]
    assert len(rows) == 9
    differences = [float(v) for v in re.findall(r"\| (\d\.\de[-+]\d\d)", "\n".join(rows))]
    assert len(differences) == 8 and max(differences) < 1e-4  # float32 sliced and 10-iteration barycenter included
