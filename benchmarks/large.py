"""Large problems and warm starts (CPU).

1. Online point-cloud solves at n = m in {20,000, 100,000}, d in {3, 64} (squared Euclidean cost, never
   materialised: a dense float32 cost at 100,000 would be 40 GB), each in a fresh subprocess: seconds per
   iteration (over the whole solve, first iteration and set-up included, and in steady state: the difference
   between a (1 + k)-iteration and a 1-iteration solve, divided by k), peak resident memory, and the machine's
   floor measured in the same subprocess: the time of the two n x m x (d + 2) matrix products and the 2 n m
   exponentials an iteration needs at the least (the logits of each half-step as one product of augmented
   coordinates, then exp), tiled as the solver tiles them, best of two tile shapes.
2. Warm starts across training steps: a sequence of GCA-like problems (cost -cos between two views of a batch of
   embeddings that drift a little at every step, as under SGD); iterations to reach the tolerance when every solve
   starts from zero potentials vs from the previous step's potentials (``init=previous_plan``).

Run: ``python benchmarks/large.py`` (about 15 minutes on 2 CPU cores; ``--sizes``/``--dims`` to choose the
point clouds, ``--quick`` for a smoke run). Writes ``benchmarks/results/large.md`` and ``large.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import torch

import otalign

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

_ONLINE_SCRIPT = """
import json, resource, sys, time, torch, otalign
n, d, iters = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
gen = torch.Generator().manual_seed(0)
x = torch.randn(n, d, generator=gen); y = torch.randn(n, d, generator=gen) + 0.25
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
problem = otalign.Problem(otalign.PointCloud(x, y, cost="sqeuclidean"), eps=2.0)
start = time.perf_counter()
otalign.solve(problem, max_iter=1, tol=0)
one = time.perf_counter() - start
start = time.perf_counter()
plan = otalign.solve(problem, max_iter=1 + iters, tol=0)
solve_s = time.perf_counter() - start
row_error, col_error = (float(e) for e in plan.marginal_error)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
left, right = torch.randn(n, d + 2, generator=gen), torch.randn(d + 2, n, generator=gen) / (d + 2)
def half_step_floor(rows, cols):
    buffer = torch.empty(rows * cols)
    start = time.perf_counter()
    for i in range(0, n, rows):
        for j in range(0, n, cols):
            a, b = left[i:i + rows], right[:, j:j + cols]
            torch.mm(a, b, out=buffer[:a.shape[0] * b.shape[1]].view(a.shape[0], b.shape[1])).exp_()
    return time.perf_counter() - start
floor = 2 * min(half_step_floor(512, 2048), half_step_floor(max(1, (1 << 21) // n), n))
print(json.dumps({"n": n, "d": d, "iterations": 1 + iters, "seconds_per_iteration": solve_s / (1 + iters),
                  "steady_seconds_per_iteration": (solve_s - one) / iters, "floor_seconds_per_iteration": floor,
                  "rss_before_mb": before, "peak_rss_mb": peak, "row_marginal_l1": row_error,
                  "col_marginal_l1": col_error}))
"""


def online_solve(n: int, d: int, iters: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _ONLINE_SCRIPT, str(n), str(d), str(iters)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm_start_trajectory(batch: int, dim: int, steps: int, drift: float, eps: float, tol: float) -> dict:
    gen = torch.Generator().manual_seed(0)
    z0 = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen), dim=1)
    z1 = torch.nn.functional.normalize(z0 + 0.3 * torch.randn(batch, dim, generator=gen), dim=1)
    cold, warm = [], []
    previous = None
    for _ in range(steps):
        z0 = torch.nn.functional.normalize(z0 + drift * torch.randn(batch, dim, generator=gen), dim=1)
        z1 = torch.nn.functional.normalize(z1 + drift * torch.randn(batch, dim, generator=gen), dim=1)
        problem = otalign.Problem(-(z0 @ z1.T), eps=eps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cold.append(otalign.solve(problem, max_iter=5000, tol=tol).iterations)
            plan = otalign.solve(problem, max_iter=5000, tol=tol, init=previous)
        warm.append(plan.iterations)
        previous = plan
    return {"batch": batch, "dim": dim, "steps": steps, "drift": drift, "eps": eps, "tol": tol,
            "cold_mean": sum(cold) / steps, "warm_mean": sum(warm[1:]) / (steps - 1), "cold": cold, "warm": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[3, 64])
    parser.add_argument("--iters", type=int, default=2, help="iterations after the first (steady state)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--warm-only", action="store_true",
                        help="rerun the warm-start section only, keeping the online figures of the last large.json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.dims, args.iters = [5000], [3], 1
    if args.warm_only:
        online = json.loads((args.out / "large.json").read_text())["online"]
    else:
        online = [online_solve(n, d, args.iters) for n in args.sizes for d in args.dims]
    trajectories = [warm_start_trajectory(512, 128, 20 if not args.quick else 4, drift, eps, 1e-4)
                    for eps in (0.05, 0.02, 0.01) for drift in (0.01, 0.05)]
    online_table = markdown_table(
        ["n = m", "d", "iterations", "s / iteration (whole solve)", "s / iteration (steady)",
         "floor s / iteration", "steady / floor", "peak RSS (MB)", "RSS before solve (MB)",
         "dense float32 cost would be (GB)", "row / col marginal L1"],
        [[o["n"], o["d"], o["iterations"], o["seconds_per_iteration"], o["steady_seconds_per_iteration"],
          o["floor_seconds_per_iteration"], f"{o['steady_seconds_per_iteration'] / o['floor_seconds_per_iteration']:.2f}x",
          o["peak_rss_mb"], o["rss_before_mb"], o["n"] ** 2 * 4 / 1e9,
          f"{o['row_marginal_l1']:.2g} / {o['col_marginal_l1']:.2g}"] for o in online],
    )
    warm_table = markdown_table(
        ["batch", "eps", "drift per step", "tol", "cold-start iterations (mean)", "warm-start iterations (mean)",
         "saved"],
        [[t["batch"], t["eps"], t["drift"], t["tol"], t["cold_mean"], t["warm_mean"],
          f"{1 - t['warm_mean'] / t['cold_mean']:.0%}"] for t in trajectories],
    )
    report = "\n\n".join([
        "# Large problems and warm starts",
        f"Machine: {machine()}. Command: `python benchmarks/large.py{' --quick' if args.quick else ''}`"
        + (" (warm-start section rerun with `--warm-only`; online figures from the previous full run)." if args.warm_only
           else "."),
        __doc__.split("\n\n", 1)[1].rsplit("\n\nRun:", 1)[0],
        "## Online point-cloud solve", online_table,
        "## Warm start across training steps (balanced Sinkhorn, cost -cos, stopping on the row marginal)",
        warm_table,
    ])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "large.md").write_text(report + "\n")
    (args.out / "large.json").write_text(json.dumps({"machine": machine(), "online": online,
                                                      "warm_start": trajectories}, indent=2))
    print(report)


if __name__ == "__main__":
    main()
