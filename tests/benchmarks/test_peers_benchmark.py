"""The peer benchmark's smoke run (small sizes, one round) writes its tables; peers not installed are skipped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"


@pytest.mark.slow
def test_peers_benchmark_quick_run_writes_the_tables(tmp_path):
    out = tmp_path / "peers.md"
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--rows", "loss", "sinkhorn", "gw", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=600)
    report = out.read_text()
    for section in ("## loss", "## sinkhorn", "## gw"):
        assert section in report
    assert "| two_n=256 | plain torch InfoNCE |" in report
    otalign_rows = [line for line in report.splitlines() if re.match(r"\| [^|]+ \| (otalign|InfoNCE|NTXent|GCA)", line)]
    assert len(otalign_rows) == 2 * 5 + 1 + 1  # 5 losses at 2 sizes, one Sinkhorn row, one GW row
    assert not any("failed" in line for line in otalign_rows)
    sinkhorn = next(line for line in otalign_rows if line.startswith("| n=128"))
    error = float(sinkhorn.split("|")[5])
    assert error < 1e-5  # the returned plan's marginal L1 at n = 128, eps = 0.1, 10 iterations
