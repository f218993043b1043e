"""Solver benchmark: otalign vs POT and geomloss on the same problems, in the same run.

Problems: cost ``-cos`` between two sets of L2-normalised 128-d Gaussian embeddings (the GCA cost), uniform
masses, float32, n in {256, 1024, 4096}, eps in {0.5, 0.1, 0.01}. Every solver runs the same number of iterations
(``--iters``, no stopping test) from zero potentials:

* otalign ``sinkhorn`` as it runs by default (``kernel="auto"``), with the eager blocked log-domain soft-min forced
  (``kernel="blocked"``) and with the fused ``kernel="compiled"``;
* POT ``ot.sinkhorn(method="sinkhorn_log")`` and ``method="sinkhorn"`` (scaling), torch backend;
* geomloss's own Sinkhorn loop (``softmin_tensorized``, its symmetric updates, no annealing) on the same matrix.

Reported: ms per iteration (a whole solve of ``--iters`` iterations divided by ``--iters``, so each solver's
once-per-solve set-up — building its kernel, validating, forming the final plan — is included; median of
``--repeats``), how many times faster otalign's default / compiled kernels are than each peer, and the L1 error of
each float32 plan against the float64 plan of the same algorithm after the same iterations (otalign's log-domain
loop, POT's ``sinkhorn_log`` and geomloss's loop, each in float64; the three differ before convergence: POT updates
the columns first, otalign the rows, geomloss both at once). A NaN error means the solver broke down. otalign's
default (``kernel="auto"``) runs the kernel-domain path (same iterates) where the cost's spread / eps <= 40 (eps 0.5
and 0.1 here: the spread of these costs is about 1) and the absorbed kernel domain otherwise (eps 0.01; certified
equal to the log domain up to rounding, used because no gradient flows through these solves).
Also: the throughput of the log-domain soft-min itself (``kernel="blocked"``): one half-step with a good shift
hint against one ``exp`` over the same n x m elements in cache-sized blocks (the exponentials a half-step cannot
avoid), as a fraction of that exp throughput.
Also: iterations to convergence for unbalanced problems (plain vs translation-invariant Sinkhorn vs POT), and the
peak memory of a point-cloud solve at n = m = 20,000 (d = 64) measured in a subprocess.

Run: ``python benchmarks/solvers.py`` (about 10 minutes on 2 CPU cores); ``--quick`` for a smoke run.
Writes ``benchmarks/results/solvers.md`` and ``solvers.json``.
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
from otalign.solvers import Sinkhorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, median_ms  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def embeddings_cost(n: int, dim: int = 128, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=1)
    y = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=1)
    return (-(x @ y.T)).to(dtype)


def uniform(n: int, dtype, device="cpu") -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=dtype, device=device)


# ----------------------------------------------------------------------------- the solvers, as plan makers
def otalign_plan(cost, eps, iters, kernel="auto"):
    plan = otalign.solve(otalign.Problem(cost, eps=eps), Sinkhorn(kernel=kernel), max_iter=iters, tol=0)
    return plan.matrix


def pot_plan(cost, eps, iters, method):
    import ot

    n = cost.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mass = uniform(n, cost.dtype, cost.device)
        return ot.sinkhorn(mass, mass, cost, eps, method=method,
                           numItermax=iters, stopThr=0.0)


def geomloss_plan(cost, eps, iters):
    from geomloss._legacy.sinkhorn_divergence import sinkhorn_loop
    from geomloss._legacy.sinkhorn_samples import softmin_tensorized

    n = cost.shape[0]
    log_w = uniform(n, cost.dtype, cost.device).log()[None]
    with torch.no_grad():
        _, _, g, f = sinkhorn_loop(softmin_tensorized, log_w, log_w, None, None, cost[None], cost.T[None],
                                   [eps] * iters, None, debias=False, last_extrapolation=False)
    torch.set_grad_enabled(True)
    return (log_w[0, :, None] + log_w[0, None, :] + (f[0, :, None] + g[0, None, :] - cost) / eps).exp()


def l1_error(plan, reference) -> float:
    return float((plan.double() - reference).abs().sum())


# ----------------------------------------------------------------------------- sections
def speed_table(sizes, eps_values, iters, repeats):
    rows, records = [], []
    for n in sizes:
        cost32 = embeddings_cost(n)
        cost64 = cost32.double()
        for eps in eps_values:
            ref_ours = otalign_plan(cost64, eps, iters, "blocked")
            ref_pot = pot_plan(cost64, eps, iters, "sinkhorn_log")
            ref_geo = geomloss_plan(cost64, eps, iters)
            runs = {
                "otalign": (lambda: otalign_plan(cost32, eps, iters), ref_ours),
                "otalign blocked": (lambda: otalign_plan(cost32, eps, iters, "blocked"), ref_ours),
                "otalign compiled": (lambda: otalign_plan(cost32, eps, iters, "compiled"), ref_ours),
                "POT sinkhorn_log": (lambda: pot_plan(cost32, eps, iters, "sinkhorn_log"), ref_pot),
                "POT sinkhorn": (lambda: pot_plan(cost32, eps, iters, "sinkhorn"), ref_pot),
                "geomloss tensorized": (lambda: geomloss_plan(cost32, eps, iters), ref_geo),
            }
            ms, err = {}, {}
            for name, (make, reference) in runs.items():
                ms[name] = median_ms(make, repeats) / iters
                err[name] = l1_error(make(), reference)
            record = {"n": n, "eps": eps, "iters": iters, "ms_per_iter": ms, "l1_error": err}
            records.append(record)
            print(json.dumps(record), flush=True)
            base, fused = ms["otalign"], ms["otalign compiled"]
            rows.append([
                n, eps, base, ms["otalign blocked"], fused, ms["POT sinkhorn_log"], ms["POT sinkhorn"], ms["geomloss tensorized"],
                f"{ms['POT sinkhorn_log'] / base:.1f}x / {ms['POT sinkhorn_log'] / fused:.1f}x",
                f"{ms['POT sinkhorn'] / base:.1f}x / {ms['POT sinkhorn'] / fused:.1f}x",
                f"{ms['geomloss tensorized'] / base:.1f}x / {ms['geomloss tensorized'] / fused:.1f}x",
                " / ".join(f"{err[k]:.1g}" for k in runs),
            ])
    header = ["n", "eps", "otalign ms/it", "blocked ms/it", "compiled ms/it", "POT log ms/it", "POT scaling ms/it",
              "geomloss ms/it", "vs POT log", "vs POT scaling", "vs geomloss",
              "L1 error vs float64 (otalign / blocked / compiled / POT log / POT scaling / geomloss)"]
    return markdown_table(header, rows), records


def throughput_table(n, eps, repeats):
    """A blocked log-domain half-step (both axes, good hint) against ``exp`` over the same n x m elements."""
    from otalign import softmin

    cost = embeddings_cost(n)
    geometry = otalign.DenseCost(cost)
    h = torch.zeros(n)
    block = torch.empty(geometry.block_rows(), n)
    source = cost[: block.shape[0]].clone()

    def exp_pass():
        for _ in geometry.row_blocks():
            torch.exp(source, out=block)

    exp_ms = median_ms(exp_pass, 5 * repeats)
    rows, records = [], []
    for axis in (1, 0):
        hint = softmin.logsumexp(geometry, h, eps, axis)
        ms = median_ms(lambda: softmin.logsumexp(geometry, h, eps, axis, hint=hint), 5 * repeats)
        records.append({"n": n, "eps": eps, "axis": axis, "half_step_ms": ms, "exp_ms": exp_ms})
        rows.append([n, eps, "rows (axis=1)" if axis == 1 else "columns (axis=0)", ms, exp_ms, f"{exp_ms / ms:.0%}"])
    header = ["n", "eps", "half-step", "log-domain half-step ms", "exp over n x m ms", "share of exp throughput"]
    return markdown_table(header, rows), records


def unbalanced_table(n, eps_values, rho, tol):
    import ot

    cost = embeddings_cost(n, dtype=torch.float64)
    rows, records = [], []
    for eps in eps_values:
        problem = otalign.Problem(cost, eps=eps, rho_a=rho, rho_b=rho)
        counts = {}
        for name in ("sinkhorn", "unbalanced"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                counts[name] = otalign.solve(problem, name, max_iter=20_000, tol=tol).iterations
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, log = ot.unbalanced.sinkhorn_unbalanced(uniform(n, cost.dtype), uniform(n, cost.dtype), cost, eps,
                                                       rho, numItermax=20_000, stopThr=tol, log=True)
        counts["POT sinkhorn_unbalanced"] = len(log["err"])
        ms = {
            "otalign": median_ms(lambda: otalign.solve(problem, max_iter=20, tol=0), 3) / 20,
            "POT": median_ms(lambda: ot.unbalanced.sinkhorn_unbalanced(
                uniform(n, torch.float32), uniform(n, torch.float32), cost.float(), eps, rho, numItermax=20,
                stopThr=0.0), 3) / 20,
        }
        records.append({"n": n, "eps": eps, "rho": rho, "iterations": counts, "ms_per_iter_float": ms})
        rows.append([n, eps, rho, counts["sinkhorn"], counts["unbalanced"], counts["POT sinkhorn_unbalanced"],
                     f"{counts['sinkhorn'] / counts['unbalanced']:.1f}x"])
    header = ["n", "eps", "rho", "sinkhorn iters", "translation-invariant iters", "POT iters",
              "fewer iterations (TI vs plain)"]
    return markdown_table(header, rows), records


_MEMORY_SCRIPT = """
import sys, time, torch, otalign
sys.path.insert(0, sys.argv[4])
from _common import peak_rss_mb, reset_peak_rss
torch.manual_seed(0)
n, d, iters = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
x = torch.randn(n, d); y = torch.randn(n, d) + 0.5
reset_peak_rss()
base = peak_rss_mb()
start = time.perf_counter()
problem = otalign.Problem(otalign.PointCloud(x, y, cost="sqeuclidean"), eps=1.0)
plan = otalign.solve(problem, max_iter=iters, tol=0)
rows, cols = plan.marginals
elapsed = time.perf_counter() - start
print(base, peak_rss_mb(), elapsed, float(plan.marginal_error[0]))
"""


def memory_row(n, d, iters):
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(n), str(d), str(iters), here], capture_output=True,
                         text=True, check=True).stdout.split()
    base, peak, seconds, row_error = map(float, out)
    dense_gb = n * n * 4 / 1e9
    record = {"n": n, "d": d, "iters": iters, "rss_before_mb": base, "peak_rss_mb": peak,
              "solve_mb": peak - base, "seconds": seconds, "row_marginal_l1": row_error, "dense_cost_gb": dense_gb}
    table = markdown_table(
        ["n = m", "d", "iterations", "peak RSS (MB)", "RSS added by the solve (MB)", "dense float32 cost (GB)",
         "seconds", "row marginal L1 error"],
        [[n, d, iters, peak, peak - base, dense_gb, seconds, row_error]],
    )
    return table, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.5, 0.1, 0.01])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-n", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.eps, args.iters, args.repeats, args.memory_n = [128], [0.1], 5, 1, 2000
    speed, speed_records = speed_table(args.sizes, args.eps, args.iters, args.repeats)
    throughput, throughput_records = throughput_table(max(args.sizes), min(args.eps), args.repeats)
    unbalanced, unbalanced_records = unbalanced_table(min(1024, max(args.sizes)), [0.1, 0.01], 1.0, 1e-6)
    memory, memory_record = memory_row(args.memory_n, 64, 5)
    args.out.mkdir(parents=True, exist_ok=True)
    report = "\n\n".join([
        "# Solver benchmark",
        f"Machine: {machine()}. Command: `python benchmarks/solvers.py{' --quick' if args.quick else ''}`.",
        __doc__.split("\n\n", 1)[1].rsplit("\n\nRun:", 1)[0],
        "## Balanced Sinkhorn, ms per iteration (ratios: how many times faster otalign default / compiled is than the peer)",
        speed,
        "## Log-domain soft-min throughput (float32, blocked kernel, hint = the exact result)",
        throughput,
        "## Unbalanced: iterations to reach tol = 1e-6 (float64), rho = 1",
        unbalanced,
        "## Point cloud, online soft-min (no n x m matrix)",
        memory,
    ])
    (args.out / "solvers.md").write_text(report + "\n")
    (args.out / "solvers.json").write_text(json.dumps(
        {"machine": machine(), "balanced": speed_records, "throughput": throughput_records,
         "unbalanced": unbalanced_records, "memory": memory_record},
        indent=2))
    print(report)


if __name__ == "__main__":
    main()
