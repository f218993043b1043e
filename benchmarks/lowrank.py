"""Low-rank Sinkhorn (``solve(..., "lowrank", rank=r)``) against the full log-domain solve, and at n = 10^6 (CPU).

1. n = m = 5000 point clouds (d = 3 and d = 64; a mixture of 20 Gaussian clusters, y drawn from the same mixture,
   squared Euclidean cost, float32): transport cost ``<C, P>`` and entropic objective ``<C, P> + eps KL(P | a b^T)``
   of the low-rank plan (evaluated on the materialised 5000 x 5000 plan) against the full solve
   (``otalign.solve(Problem(PointCloud(x, y), eps=eps))``), for r = 10, 50, 100, with times. eps is 5% of the
   mean cost for the full solve; the low-rank solver runs with its default epsilon = 0 (no entropic term) and,
   in one row, with the entropic term on its factors at the same eps.
2. n = m = 10^6, d = 3, r = 10 and 20: seconds per mirror-descent step, per projection (Dykstra) iteration, total,
   and peak RSS, each in a fresh subprocess (a handful of steps: the point is the cost per step and the memory).
3. Per step against POT (``--against-pot``): n = m = 10,000 and 100,000, d = 3 (x ~ N(0, I), y ~ N(0.5, I)),
   rank 10, float64, 30 Dykstra iterations per step (``inner_max_iter=30, inner_tol=0``; POT:
   ``numItermax=30, stopThr=0``, its fixed 100 steps), POT's ``ot.lowrank_sinkhorn`` and otalign (this tree, and with
   ``--baseline PATH`` another checkout) each in its own one-thread process, in interleaved rounds: milliseconds
   per step (whole call / steps) and the ratio to POT in the same round.

4. Defaults (``--defaults``): ``solve(problem, "lowrank", rank=r)`` with every default (tol 1e-6, max_iter 1000) on
   uniform random points in the unit cube, 40 x 30 (d = 2, r = 3) and 200 x 150 (d = 3, r = 10), seeds 0-2, float32
   and float64: seconds, steps, projection iterations, ``converged`` and the float64 residual of the plan; with
   ``--baseline PATH`` the same solves of another checkout on the 40 x 30 problems (its 200 x 150 solves take
   minutes), each solve in its own one-thread process, the two trees interleaved.

Run: ``nice -n 10 python benchmarks/lowrank.py`` (``--quick`` for a smoke run; ``--against-pot [--baseline PATH]``
and ``--defaults [--baseline PATH]`` for section 3 or 4 only, which they rewrite in the results file). Writes
``benchmarks/results/lowrank.md`` and ``lowrank.json``. Torch runs with one thread: the 2-core machine this was
measured on is shared, and two threads waiting on each other made every small operation several times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

import otalign

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
READING = """

Reading: the low-rank solver is non-convex and was stopped at 100 steps with at most 50 projection iterations per
step, so its plans miss the marginals by 1e-3 to 2e-2 (L1), and the full solve (tol 1e-2) by 1e-2: objective gaps
within about 2% are inside that slack (this is why some gaps are negative; neither plan is exactly feasible).
The transport cost approaches the full solve's as the rank grows past the number of clusters (20): r = 10 cannot
separate 20 clusters. Times: one torch thread on a shared machine (load about 8 on 2 cores); compare within a row."""

_LARGE_SCRIPT = """
import json, sys, time, warnings, torch, otalign
sys.path.insert(0, sys.argv[5])
from _common import peak_rss_mb
torch.set_num_threads(1)
n, d, rank, steps = (int(v) for v in sys.argv[1:5])
gen = torch.Generator().manual_seed(0)
x = torch.randn(n, d, generator=gen); y = torch.randn(n, d, generator=gen) + 0.5
before = peak_rss_mb()
problem = otalign.Problem(otalign.PointCloud(x, y), eps=0.05 * (2 * d + 0.25 * d))
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    plan = otalign.solve(problem, "lowrank", rank=rank, max_iter=steps, tol=0, inner_max_iter=30)
    value = float(plan.value_linear)
total = time.perf_counter() - start
print(json.dumps(dict(n=n, d=d, rank=rank, steps=plan.iterations, inner=plan.projection_iterations, total_s=total,
                      rss_before_mb=before, peak_rss_mb=peak_rss_mb(), value_linear=value,
                      marginal_error=float(plan.projection_error))))
"""


_STEP_SCRIPT = """
import json, sys, time, warnings
tree, entry, n, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if tree:  # import otalign (and its solvers) from that checkout, not from an installed copy
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "").lower()]
    sys.path.insert(0, tree)
import numpy as np, torch
torch.set_num_threads(1)
rng = np.random.default_rng(3)
x, y = rng.standard_normal((n, 3)), rng.standard_normal((n, 3)) + 0.5
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if entry == "pot":
        import ot
        ot.lowrank_sinkhorn(x, y, rank=10, numItermax=30, stopThr=0.0)
        steps, where = 100, ot.__version__
    else:
        import otalign
        problem = otalign.Problem(otalign.PointCloud(torch.from_numpy(x), torch.from_numpy(y)), eps=0.5)
        plan = otalign.solve(problem, "lowrank", rank=10, max_iter=steps, tol=0, inner_max_iter=30, inner_tol=0.0)
        steps, where = plan.iterations, otalign.__file__
print(json.dumps(dict(ms_per_step=1e3 * (time.perf_counter() - start) / steps, steps=steps, where=where)))
"""


_DEFAULTS_SCRIPT = """
import json, sys, time, warnings
tree, n, m, d, rank, seed, dtype = sys.argv[1], *(int(v) for v in sys.argv[2:7]), sys.argv[7]
if tree:
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "").lower()]
    sys.path.insert(0, tree)
import torch, otalign
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(seed)
x, y = torch.rand(n, d, generator=gen, dtype=torch.float64), torch.rand(m, d, generator=gen, dtype=torch.float64)
kind = getattr(torch, dtype)
problem = otalign.Problem(otalign.PointCloud(x.to(kind), y.to(kind)), eps=0.1)
start = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    plan = otalign.solve(problem, "lowrank", rank=rank)
seconds = time.perf_counter() - start
Q, R, g = (t.double() for t in (plan.Q, plan.R, plan.inner_marginal))
P = (Q / g) @ R.T
a, b = problem.a.double(), problem.b.double()
residual = max(float((P.sum(1) - a).abs().sum()), float((P.sum(0) - b).abs().sum()))
print(json.dumps(dict(seconds=seconds, steps=plan.iterations, inner=plan.projection_iterations,
                      converged=bool(plan.converged), residual=residual, warned=[str(w.message)[:60] for w in caught
                      if issubclass(w.category, otalign.ConvergenceWarning)])))
"""


def mixture(n: int, centres: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``n`` points, each a random centre plus N(0, I) noise."""
    labels = torch.randint(centres.shape[0], (n,), generator=gen)
    return centres[labels] + torch.randn(n, centres.shape[1], generator=gen)


def entropic_objective(P: torch.Tensor, C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float) -> float:
    """``<C, P> + eps KL(P | a b^T)`` (generalised KL), in float64."""
    P, C = P.double(), C.double()
    ref = a.double()[:, None] * b.double()[None, :]
    kl = torch.xlogy(P, P / ref).sum() - P.sum() + ref.sum()
    return float((C * P).sum() + eps * kl)


def compare(n: int, d: int, ranks: list[int], steps: int) -> list[dict]:
    gen = torch.Generator().manual_seed(d)
    centres = 3.0 * torch.randn(20, d, generator=gen)
    x, y = mixture(n, centres, gen), mixture(n, centres, gen)
    cloud = otalign.PointCloud(x, y)
    C = cloud.matrix()
    eps = 0.05 * float(C.mean())
    problem = otalign.Problem(cloud, eps=eps)
    start = time.perf_counter()
    full = otalign.solve(problem, tol=1e-2, max_iter=2000)
    full_s = time.perf_counter() - start
    full_linear = float(full.value_linear)
    full_value = float(full.value)
    rows = [dict(n=n, d=d, eps=eps, solver="full", rank=None, time_s=full_s, iterations=full.iterations,
                 value_linear=full_linear, objective=full_value, gap_linear=0.0, gap_objective=0.0,
                 marginal_error=float(full.marginal_error[0]))]
    for rank, epsilon in [(r, 0.0) for r in ranks] + [(ranks[len(ranks) // 2], None)]:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", otalign.ConvergenceWarning)
            plan = otalign.solve(problem, "lowrank", rank=rank, epsilon=epsilon, max_iter=steps, tol=1e-5,
                                 inner_max_iter=50)
            linear = float(plan.value_linear)
        elapsed = time.perf_counter() - start
        objective = entropic_objective(plan.matrix, C, problem.a, problem.b, eps)
        name = "lowrank" if epsilon == 0 else "lowrank, epsilon=eps"
        rows.append(dict(n=n, d=d, eps=eps, solver=name, rank=rank, time_s=elapsed, iterations=plan.iterations,
                         inner=plan.projection_iterations, converged=plan.converged, value_linear=linear,
                         objective=objective, gap_linear=(linear - full_linear) / abs(full_linear),
                         gap_objective=(objective - full_value) / abs(full_value),
                         marginal_error=float(plan.marginal_error[0])))
        print(rows[-1], flush=True)
    return rows


def large(n: int, d: int, rank: int, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _LARGE_SCRIPT, str(n), str(d), str(rank), str(steps), str(Path(__file__).parent)],
        capture_output=True, text=True, check=True,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(row, flush=True)
    return row


def per_step(tree: str, entry: str, n: int, steps: int) -> dict:
    """Milliseconds per step of one low-rank run in a fresh one-thread process (see ``_STEP_SCRIPT``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _STEP_SCRIPT, tree, entry, str(n), str(steps)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def against_pot(sizes: list[tuple[int, int, int]], baseline: str, quick: bool = False) -> str:
    """Section 3: interleaved rounds of POT, otalign (this tree) and the baseline tree; returns the markdown."""
    here = str(Path(__file__).resolve().parent.parent)
    entries = [("POT lowrank_sinkhorn", "", "pot"), ("otalign", here, "otalign")]
    if baseline:
        entries.append(("otalign baseline", str(Path(baseline).resolve()), "otalign"))
    rows = []
    for n, steps, rounds in sizes:
        for round_ in range(rounds):
            times = {}
            for name, tree, entry in entries:
                times[name] = per_step(tree, entry, n, steps)["ms_per_step"]
                print(n, round_, name, f"{times[name]:.1f} ms/step", flush=True)
            for name, _, _ in entries:
                rows.append(dict(n=n, round=round_, entry=name, ms_per_step=times[name],
                                 ratio=times[name] / times["POT lowrank_sinkhorn"]))
    with open("/proc/loadavg") as load:
        loadavg = load.read().split()[:3]
    table = markdown_table(["n = m", "round", "entry", "ms / step", "time / POT's (same round)"],
                           [[r["n"], r["round"], r["entry"], r["ms_per_step"], f"{r['ratio']:.2f}"] for r in rows])
    return (f"## Per step against POT\n\nCommand: `python benchmarks/lowrank.py --against-pot"
            f"{' --quick' if quick else ''}{' --baseline ' + baseline if baseline else ''}`; "
            f"load average {' '.join(loadavg)} (2 cores, shared). "
            f"Rank 10, d = 3, float64, 30 Dykstra iterations per step, one thread per process; otalign runs "
            f"{', '.join(str(s) for _, s, _ in sizes)} steps, POT its fixed 100. Below 1: faster than POT.\n\n"
            + table + "\n")


def defaults(baseline: str, quick: bool) -> str:
    """Section 4: default solves on small random problems (see the module docstring); returns the markdown."""
    here = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    sizes = [(40, 30, 2, 3)] + ([] if quick else [(200, 150, 3, 10)])
    rows = []
    for n, m, d, rank in sizes:
        for dtype in ("float32", "float64"):
            for seed in range(1 if quick else 3):
                trees = [("otalign", here)] + ([("baseline", str(Path(baseline).resolve()))]
                                               if baseline and n <= 40 else [])
                for name, tree in trees:
                    out = subprocess.run([sys.executable, "-c", _DEFAULTS_SCRIPT, tree, str(n), str(m), str(d),
                                          str(rank), str(seed), dtype], capture_output=True, text=True, check=True,
                                         env=env)
                    row = dict(json.loads(out.stdout.strip().splitlines()[-1]), tree=name, n=n, m=m, rank=rank,
                               dtype=dtype, seed=seed)
                    print(row, flush=True)
                    rows.append(row)
    with open("/proc/loadavg") as load:
        loadavg = " ".join(load.read().split()[:3])
    table = markdown_table(
        ["n x m", "rank", "dtype", "seed", "tree", "seconds", "steps", "projection its", "converged",
         "float64 residual", "warning"],
        [[f"{r['n']} x {r['m']}", r["rank"], r["dtype"], r["seed"], r["tree"], r["seconds"], r["steps"], r["inner"],
          r["converged"], f"{r['residual']:.1e}", "; ".join(r["warned"]) or "-"] for r in rows],
    )
    return (f"## Defaults on small random problems\n\nCommand: `python benchmarks/lowrank.py --defaults"
            f"{' --quick' if quick else ''}{' --baseline ' + baseline if baseline else ''}`; load average {loadavg} "
            f"(2 cores, shared). `solve(problem, 'lowrank', rank=r)` with every default (tol 1e-6, max_iter 1000); "
            f"each solve in its own one-thread process.\n\n" + table + "\n")


def write_section(heading: str, section: str, quick: bool) -> None:
    """Replace (or append) the section that starts with ``heading`` in the results file."""
    path = RESULTS / ("lowrank_quick.md" if quick else "lowrank.md")
    text = path.read_text() if path.exists() else "# Low-rank Sinkhorn\n"
    before, _, after = text.partition(heading)
    rest = after.split("\n## ", 1)[1] if "\n## " in after else ""
    text = before.rstrip() + "\n\n" + section + ("\n## " + rest if rest else "")
    path.write_text(text)
    print(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--against-pot", action="store_true", help="only section 3 (per step against POT)")
    parser.add_argument("--defaults", action="store_true", help="only section 4 (default solves, small problems)")
    parser.add_argument("--baseline", default="", help="with --against-pot / --defaults: another checkout as well")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.against_pot:
        sizes = [(2000, 5, 1)] if args.quick else [(10_000, 10, 2), (100_000, 10, 2)]
        write_section("## Per step against POT", against_pot(sizes, args.baseline, args.quick), args.quick)
        return
    if args.defaults:
        write_section("## Defaults on small random problems", defaults(args.baseline, args.quick), args.quick)
        return
    n, big, ranks, steps, big_steps = (500, 20_000, [5, 10], 20, 2) if args.quick else \
        (5000, 10**6, [10, 50, 100], 100, 2)
    comparison = compare(n, 3, ranks, steps) + compare(n, 64, ranks, steps)
    scale = [large(big, 3, r, big_steps) for r in (10, 20)]
    RESULTS.mkdir(exist_ok=True)
    name = "lowrank_quick" if args.quick else "lowrank"
    (RESULTS / f"{name}.json").write_text(json.dumps(dict(comparison=comparison, large=scale), indent=1))
    table_a = markdown_table(
        ["d", "eps", "solver", "rank", "time (s)", "steps (projection its)", "<C,P>", "gap <C,P>",
         "<C,P> + eps KL(P|ab^T)", "gap objective", "row marginal L1"],
        [[r["d"], r["eps"], r["solver"], r["rank"] or "-", r["time_s"],
          f"{r['iterations']}" + (f" ({r['inner']})" if "inner" in r else ""), r["value_linear"],
          f"{100 * r['gap_linear']:+.1f}%", r["objective"], f"{100 * r['gap_objective']:+.1f}%",
          f"{r['marginal_error']:.1e}"] for r in comparison],
    )
    table_b = markdown_table(
        ["n = m", "d", "rank", "steps", "projection its", "total (s)", "s / step", "s / projection it",
         "peak RSS (MB)", "RSS before solve (MB)", "row marginal L1"],
        [[r["n"], r["d"], r["rank"], r["steps"], r["inner"], r["total_s"], r["total_s"] / r["steps"],
          r["total_s"] / max(1, r["inner"]), r["peak_rss_mb"], r["rss_before_mb"], f"{r['marginal_error']:.1e}"]
         for r in scale],
    )
    text = (
        f"# Low-rank Sinkhorn\n\nMachine: {machine()} (set to 1 thread). Command: `nice -n 10 python "
        f"benchmarks/lowrank.py{' --quick' if args.quick else ''}`.\n\n"
        + __doc__.split("\n\n", 1)[1].rsplit("\n\nRun:", 1)[0]
        + f"\n\n## n = m = {n}: against the full log-domain solve\n\nFull solve: tol 1e-2 (row-marginal L1). "
        f"Low-rank: default options (epsilon = 0: no entropic term; random initialisation, seed 0), at most "
        f"{steps} steps, tol 1e-5 (relative change of its objective), at most 50 projection iterations per step; "
        f"one row with the entropic term on the factors at the problem's eps (`epsilon=None`). Gaps are relative "
        f"to the full solve's figure.\n\n" + table_a + READING
        + f"\n\n## n = m = {big}: cost per step\n\n{big_steps} mirror-descent steps, at most 30 projection "
        f"iterations each (tol=0), float32, x ~ N(0, I), y ~ N(0.5, I).\n\n" + table_b + "\n"
    )
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
