"""otalign's online point-cloud soft-min vs geomloss's KeOps backend (``backend="online"``), on the CPU.

Both compute Sinkhorn on ``|x - y|^2 / 2`` without storing the cost matrix. geomloss anneals eps (``scaling``) and
adds an extrapolation step, so its time per iteration is its solve time divided by the length of its schedule (+2);
otalign runs the same number of fixed iterations. Needs pykeops (``pip install pykeops``; it compiles its
kernels with the system C++ compiler on first use). Writes ``benchmarks/results/keops.md``.

Run: ``python benchmarks/keops.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import otalign

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    try:
        import geomloss
        import pykeops  # noqa: F401
    except ImportError as error:
        raise SystemExit(f"needs geomloss and pykeops: {error}")
    from otalign.solvers.geomloss_backend import _schedule_length

    rows, records = [], []
    for n, d in [(5000, 3), (20000, 3), (5000, 64)]:
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen) + 0.5
        eps, scaling = 0.05, 0.7
        loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=eps ** 0.5, scaling=scaling, debias=False,
                                    potentials=True, backend="online")
        loss(x, y)  # compile the KeOps kernels
        start = time.perf_counter()
        loss(x, y)
        keops_s = time.perf_counter() - start
        steps = _schedule_length(otalign.PointCloud(x, y, "half_sqeuclidean"), eps, 2, scaling)
        problem = otalign.Problem(otalign.PointCloud(x, y, cost="half_sqeuclidean"), eps=eps)
        otalign.solve(problem, max_iter=2, tol=0)
        start = time.perf_counter()
        otalign.solve(problem, max_iter=steps, tol=0)
        ours_s = time.perf_counter() - start
        record = {"n": n, "d": d, "iterations": steps, "keops_ms_per_iter": keops_s / steps * 1e3,
                  "otalign_ms_per_iter": ours_s / steps * 1e3}
        records.append(record)
        print(json.dumps(record), flush=True)
        rows.append([n, d, steps, record["keops_ms_per_iter"], record["otalign_ms_per_iter"],
                     f"{record['keops_ms_per_iter'] / record['otalign_ms_per_iter']:.2f}x"])
    table = markdown_table(["n = m", "d", "iterations", "geomloss KeOps ms/it", "otalign online ms/it",
                            "otalign speed-up"], rows)
    report = "\n\n".join(["# Online point clouds: otalign vs geomloss + KeOps (CPU)",
                          f"Machine: {machine()}. Command: `python benchmarks/keops.py`.",
                          __doc__.split("\n\n", 1)[1].rsplit("\n\nRun:", 1)[0], table])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "keops.md").write_text(report + "\n")
    (RESULTS / "keops.json").write_text(json.dumps({"machine": machine(), "runs": records}, indent=2))
    print(report)


if __name__ == "__main__":
    main()
