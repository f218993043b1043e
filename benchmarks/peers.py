"""Peer comparison: otalign against POT, geomloss, OTT-JAX, lightly and a plain torch InfoNCE, one core each.

Every library runs in its own worker process pinned to CPU 0 (``taskset -c 0``; JAX ignores the single-thread XLA
flags, so pinning is the only way to hold it to one core; torch and BLAS are also set to one thread). The driver
sends the workers one task at a time, in interleaved rounds (each round runs every row on every library once, one
after another, so the workers never compete), and reports each library's median time over the rounds and its
same-round ratio to the row's reference library (the median over rounds of time / reference time in that round).
OTT's solves are compiled ahead of time (``jax.jit(...).lower(...).compile()``, outside the timed calls); each
worker runs the loss tasks and the Sinkhorn tasks up to n = 1024 once untimed first (the other solves take
seconds: they first run once on a small instance of the same row, which pays imports and first-call costs) and
times every task ``--repeats`` times per round. The tolerance row runs in the first round
only (its solves take tens of seconds on a loaded machine), without POT's ``sinkhorn_log`` (minutes at n = 4096).

Rows (float32 unless stated; uniform masses):

* ``loss``: contrastive loss forward + backward, two views of ``N`` x 128 embeddings, ``2N`` in {512, 1024, 4096},
  temperature 0.5; reference: a plain 10-line torch InfoNCE; lightly's ``NTXentLoss``; otalign's InfoNCE,
  NTXent, GCAInfoNCE, GCARINCE and GCAUOT (10 iterations). Checked: the value of InfoNCE / NTXentLoss against the plain one.
* ``sinkhorn``: ``K`` in {10, 20} Sinkhorn iterations, n in {1024, 4096}, eps in {0.01, 0.1, 0.5}, cost ``-cos``
  between two sets of normalised 128-d Gaussian embeddings (spread about 1), the n x n plan returned; reference:
  POT's NumPy scaling loop ``ot.sinkhorn``. Also POT ``method="sinkhorn_log"`` (NumPy), geomloss's tensorized
  log-domain loop (no annealing, ``K`` equal eps), OTT ``lse_mode=True`` and ``False`` (``inner_iterations=1``,
  ``min_iterations = max_iterations = K``, threshold -1: with OTT's default ``inner_iterations=10`` it would run
  ``floor(K / 10) * 10`` iterations, none for K = 5; each OTT result's ``n_iters`` is checked to be K) and otalign.
* ``small eps``: the same at eps = 0.002, K = 20, n in {1024, 4096}; reference OTT lse (kernel-domain peers
  underflow: their plans are all zero or NaN).
* ``gw``: entropic GW on dense matrices, n in {500, 1000, 2000}, float64, points ``x (n, 3)``, ``y (n, 2)``, squared
  distances scaled to max 1, eps 5e-3, 5 outer steps of 50 inner iterations (no stopping test); reference POT
  ``ot.gromov.entropic_gromov_wasserstein`` (NumPy); otalign ``GWProblem`` on the same dense matrices.
* ``lowrank``: low-rank OT, rank 10, n in {10,000, 100,000} points in 3-d (squared Euclidean, float64), 30 Dykstra
  iterations per mirror-descent step (no stopping test), time per step (a call's time divided by its steps);
  reference POT ``ot.lowrank_sinkhorn(x, y, rank=10, numItermax=30, stopThr=0.0)``, whose number of steps is
  fixed at 100 in its source (it has no option for it: ``numItermax`` is Dykstra's count), so both sizes run its
  full 100 steps (about 22 s a call at n = 100,000 on a loaded 2-core machine); otalign ``solve(..., "lowrank")``
  (20 steps).
* ``to tolerance``: time until the plan's marginal L1 error is at most 1e-4, eps 0.01, n = 4096 (the ``sinkhorn``
  cost); reference POT ``ot.sinkhorn`` (its test is the L2 norm of the column error, checked every 10 iterations:
  set to 1e-4 / sqrt(n), which guarantees the L1 target, and, in a second row, to 1e-4 itself, whose plan's L1
  error is then measured and may miss the target); OTT with its defaults (threshold 1e-4 on the L1 error,
  checked every 10 iterations), with adaptive momentum and with Anderson acceleration (memory 5); otalign
  ``tol=1e-4`` (L1 marginal residuals), plain and with ``Sinkhorn(acceleration="anderson")`` (memory 5).

Checked for every plan: its marginal L1 error ``|P 1 - a|_1 + |P^T 1 - b|_1`` in float64, beside the same figure
for a float64 reference in the Sinkhorn rows (otalign's log-domain Sinkhorn with the same iterations). A plan
whose error is far above the reference's (all zero: 2; NaN) did not solve the problem.

Run: ``python benchmarks/peers.py`` (about 15 minutes on a loaded 2-core machine); ``--quick`` (small sizes, one round: a smoke run);
``--rows loss sinkhorn ...`` for some rows. Libraries that are not installed are skipped: ``pip install
otalign[peers]`` installs POT, geomloss and OTT-JAX; ``pip install --no-deps lightly`` adds lightly's losses without
its training stack (its loss module needs only torch). Writes
``benchmarks/results/peers.md`` (``--out`` for another file) and the raw measurements beside it (``peers.json``;
``--report-only peers.json`` renders the table again; ``--merge`` keeps the rows of the existing JSON that this run
does not measure, naming their run in the header).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
ROWS = ("loss", "sinkhorn", "small eps", "gw", "lowrank", "to tolerance")
LIBRARIES = ("torch", "lightly", "pot", "geomloss", "ott", "otalign")
MODULES = {"torch": "torch", "lightly": "lightly", "pot": "ot", "geomloss": "geomloss", "ott": "ott", "otalign": "otalign"}
GW_EPS = 5e-3


# ============================================================================ tasks
def tasks(rows: list[str], quick: bool) -> list[dict]:
    """The measurements: one dict per (row, size, parameters, library entry); ``ref`` marks the row's reference."""
    out: list[dict] = []

    def add(row, library, entry, ref=False, **params):
        out.append({"row": row, "library": library, "entry": entry, "ref": ref, **params})

    if "loss" in rows:
        for two_n in ([128, 256] if quick else [512, 1024, 4096]):
            add("loss", "torch", "plain torch InfoNCE", ref=True, two_n=two_n)
            add("loss", "lightly", "lightly NTXentLoss", two_n=two_n)
            for name in ("InfoNCE", "NTXent", "GCAInfoNCE", "GCARINCE", "GCAUOT"):
                add("loss", "otalign", name, two_n=two_n)
    for row, sizes, eps_values, iters_values, ref in (
        ("sinkhorn", [128] if quick else [1024, 4096], [0.1] if quick else [0.01, 0.1, 0.5], [10] if quick else [10, 20], "POT sinkhorn"),
        ("small eps", [128] if quick else [1024, 4096], [0.002], [20], "OTT lse"),
    ):
        if row not in rows:
            continue
        for n in sizes:
            for eps in eps_values:
                for iters in iters_values:
                    params = dict(n=n, eps=eps, iters=iters)
                    for library, entry in (("pot", "POT sinkhorn"), ("pot", "POT sinkhorn_log"), ("geomloss", "geomloss"),
                                           ("ott", "OTT lse"), ("ott", "OTT kernel"), ("otalign", "otalign")):
                        add(row, library, entry, ref=entry == ref, **params)
    if "gw" in rows:
        for n in ([60] if quick else [500, 1000, 2000]):
            add("gw", "pot", "POT entropic GW", ref=True, n=n, outer=2 if quick else 5, inner=10 if quick else 50)
            add("gw", "otalign", "otalign GW", n=n, outer=2 if quick else 5, inner=10 if quick else 50)
    if "lowrank" in rows:
        for n in ([500] if quick else [10_000, 100_000]):
            add("lowrank", "pot", "POT lowrank_sinkhorn", ref=True, n=n, steps=100, dykstra=5 if quick else 30)
            add("lowrank", "otalign", "otalign lowrank", n=n, steps=5 if quick else 20, dykstra=5 if quick else 30)
    if "to tolerance" in rows:
        params = dict(n=256 if quick else 4096, eps=0.1 if quick else 0.01, tol=1e-4)
        for library, entry in (("pot", "POT sinkhorn"), ("pot", "POT sinkhorn, stopThr=tol"), ("ott", "OTT defaults"),
                               ("ott", "OTT momentum"), ("ott", "OTT anderson"), ("otalign", "otalign"),
                               ("otalign", "otalign anderson")):
            add("to tolerance", library, entry, ref=entry == "POT sinkhorn", **params)
    return out


# ============================================================================ data (NumPy, identical in every worker)
def embeddings_cost(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 128)), rng.standard_normal((n, 128))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return (-(x @ y.T)).astype(np.float32)


def views(two_n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    z0 = rng.standard_normal((two_n // 2, 128)).astype(np.float32)
    return z0, (z0 + 0.5 * rng.standard_normal(z0.shape)).astype(np.float32)


def gw_costs(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    out = []
    for dim in (3, 2):
        x = rng.standard_normal((n, dim))
        cost = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        out.append(cost / cost.max())
    return out[0], out[1]


def clouds(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 3)) + 0.5


def marginal_l1(plan: np.ndarray) -> float:
    """``|P 1 - a|_1 + |P^T 1 - b|_1`` with uniform ``a, b``, in float64 (NaN stays NaN)."""
    plan = np.asarray(plan, dtype=np.float64)
    n, m = plan.shape
    return float(np.abs(plan.sum(1) - 1.0 / n).sum() + np.abs(plan.sum(0) - 1.0 / m).sum())


# ============================================================================ the libraries (run inside workers)
def make(task: dict) -> Callable[[], dict]:
    """A zero-argument callable running ``task`` and returning ``{"check": ..., ...}`` (not timed: built once)."""
    row, entry = task["row"], task["entry"]
    if row == "loss":
        return _loss(task)
    if row in ("sinkhorn", "small eps"):
        return _sinkhorn(entry, embeddings_cost(task["n"]), task["eps"], task["iters"])
    if row == "gw":
        return _gw(entry, *gw_costs(task["n"]), task["outer"], task["inner"])
    if row == "lowrank":
        return _lowrank(entry, *clouds(task["n"]), task["steps"], task["dykstra"])
    return _tolerance(entry, embeddings_cost(task["n"]), task["eps"], task["tol"])


def _loss(task: dict) -> Callable[[], dict]:
    import torch
    from torch.nn import functional as F

    z0n, z1n = views(task["two_n"])
    z0, z1 = torch.from_numpy(z0n).requires_grad_(), torch.from_numpy(z1n).requires_grad_()
    entry = task["entry"]
    if entry == "plain torch InfoNCE":
        def fn(a, b):
            z = F.normalize(torch.cat([a, b]), dim=1)
            logits = z @ z.T / 0.5
            rows = z.shape[0]
            logits = logits.masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf"))
            return F.cross_entropy(logits, torch.arange(rows).roll(rows // 2))
    elif entry == "lightly NTXentLoss":
        from lightly.loss import NTXentLoss

        fn = NTXentLoss(temperature=0.5)
    else:
        from otalign import losses

        fn = getattr(losses, entry)(temperature=0.5)

    def run() -> dict:
        z0.grad = z1.grad = None
        value = fn(z0, z1)
        value.backward()
        return {"value": float(value.detach())}

    return run


def _sinkhorn(entry: str, cost: np.ndarray, eps: float, iters: int) -> Callable[[], dict]:
    n, m = cost.shape
    if entry.startswith("POT"):
        import ot

        a, b = np.full(n, 1.0 / n, np.float32), np.full(m, 1.0 / m, np.float32)
        method = "sinkhorn_log" if entry.endswith("log") else "sinkhorn"

        def run() -> dict:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plan = ot.sinkhorn(a, b, cost, eps, method=method, numItermax=iters, stopThr=0.0)
            return {"plan": plan}

        return run
    if entry == "geomloss":
        import torch
        from geomloss._legacy.sinkhorn_divergence import sinkhorn_loop
        from geomloss._legacy.sinkhorn_samples import softmin_tensorized

        c = torch.from_numpy(cost)
        log_a = torch.full((1, n), -math.log(n))
        log_b = torch.full((1, m), -math.log(m))

        def run() -> dict:
            with torch.no_grad():
                _, _, g, f = sinkhorn_loop(softmin_tensorized, log_a, log_b, None, None, c[None], c.T[None],
                                           [eps] * iters, None, debias=False, last_extrapolation=False)
                plan = (log_a[0, :, None] + log_b[0, None, :] + (f[0, :, None] + g[0, None, :] - c) / eps).exp()
            return {"plan": plan.numpy()}

        return run
    if entry.startswith("OTT"):
        import jax
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn

        solver = sinkhorn.Sinkhorn(lse_mode=entry == "OTT lse", threshold=-1.0, inner_iterations=1,
                                   min_iterations=iters, max_iterations=iters)
        c = jax.numpy.asarray(cost)

        def solve(c):
            out = solver(linear_problem.LinearProblem(geometry.Geometry(cost_matrix=c, epsilon=eps)))
            return out.matrix, out.n_iters

        solve = jax.jit(solve).lower(c).compile()  # compiled ahead of time, not in the timed calls

        def run() -> dict:
            plan, count = solve(c)
            plan = np.asarray(plan.block_until_ready())
            if int(count) != iters:
                raise RuntimeError(f"OTT ran {int(count)} iterations, not {iters}")
            return {"plan": plan}

        return run
    import torch

    import otalign

    c = torch.from_numpy(cost)

    def run() -> dict:
        plan = otalign.solve(otalign.Problem(c, eps=eps), "sinkhorn", max_iter=iters, tol=0, grad="detach")
        return {"plan": plan.matrix.numpy()}

    return run


def _tolerance(entry: str, cost: np.ndarray, eps: float, tol: float) -> Callable[[], dict]:
    n, m = cost.shape
    if entry.startswith("POT"):
        import ot

        a, b = np.full(n, 1.0 / n, np.float32), np.full(m, 1.0 / m, np.float32)
        threshold = tol if entry.endswith("stopThr=tol") else tol / math.sqrt(m)

        def run() -> dict:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plan, log = ot.sinkhorn(a, b, cost, eps, numItermax=100_000, stopThr=threshold, log=True)
            return {"plan": plan, "iterations": int(log.get("niter", -1))}

        return run
    if entry.startswith("OTT"):
        import jax
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import acceleration, sinkhorn

        options = {"OTT defaults": {}, "OTT momentum": {"momentum": acceleration.Momentum(start=20)},
                   "OTT anderson": {"anderson": acceleration.AndersonAcceleration(memory=5)}}[entry]
        solver = sinkhorn.Sinkhorn(threshold=tol, max_iterations=100_000, **options)
        c = jax.numpy.asarray(cost)

        def solve(c):
            out = solver(linear_problem.LinearProblem(geometry.Geometry(cost_matrix=c, epsilon=eps)))
            return out.matrix, out.n_iters

        solve = jax.jit(solve).lower(c).compile()  # compiled ahead of time, not in the timed calls

        def run() -> dict:
            plan, count = solve(c)
            return {"plan": np.asarray(plan.block_until_ready()), "iterations": int(count)}

        return run
    import torch

    import otalign

    c = torch.from_numpy(cost)

    from otalign.solvers import Sinkhorn

    solver = Sinkhorn(acceleration="anderson") if entry == "otalign anderson" else Sinkhorn()

    def run() -> dict:
        plan = otalign.solve(otalign.Problem(c, eps=eps), solver, max_iter=100_000, tol=tol, grad="detach")
        return {"plan": plan.matrix.numpy(), "iterations": int(plan.iterations)}

    return run


def _gw(entry: str, cx: np.ndarray, cy: np.ndarray, outer: int, inner: int) -> Callable[[], dict]:
    if entry.startswith("POT"):
        import ot

        def run() -> dict:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plan = ot.gromov.entropic_gromov_wasserstein(cx, cy, epsilon=GW_EPS, max_iter=outer, tol=0.0,
                                                             numItermax=inner, stopThr=0.0)
            return {"plan": plan}

        return run
    import torch

    import otalign

    tx, ty = torch.from_numpy(cx), torch.from_numpy(cy)

    def run() -> dict:
        plan = otalign.solve(otalign.GWProblem(tx, ty, eps=GW_EPS), max_iter=outer, tol=0.0, grad="detach",
                             inner_max_iter=inner, inner_tol=0.0)
        return {"plan": plan.matrix.numpy()}

    return run


def _lowrank(entry: str, x: np.ndarray, y: np.ndarray, steps: int, dykstra: int) -> Callable[[], dict]:
    n, m = x.shape[0], y.shape[0]
    if entry.startswith("POT"):
        import ot

        def run() -> dict:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q, r, g = ot.lowrank_sinkhorn(x, y, rank=10, numItermax=dykstra, stopThr=0.0)
            error = np.abs(q.sum(1) - 1.0 / n).sum() + np.abs(r.sum(1) - 1.0 / m).sum()
            return {"error": float(error), "steps": 100}

        return run
    import torch

    import otalign

    problem = otalign.Problem(otalign.PointCloud(torch.from_numpy(x), torch.from_numpy(y)), eps=0.5)

    def run() -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = otalign.solve(problem, "lowrank", rank=10, max_iter=steps, tol=0, inner_max_iter=dykstra,
                                 inner_tol=0.0)
        return {"error": float(plan.projection_error), "steps": int(plan.iterations)}

    return run


def warm_up(task: dict) -> bool:
    """Whether a task runs once untimed first: the losses and the Sinkhorn rows up to n = 1024 (calls of a few ms).
    The other tasks take seconds; they warm up on a small instance of the same row (imports and first-call costs)."""
    return task["row"] == "loss" or (task["row"] in ("sinkhorn", "small eps") and task["n"] <= 1024)


def worker() -> None:
    """Serve tasks from stdin (one JSON per line): reply ``{"ms": [...], ...}`` per task."""
    import torch

    torch.set_num_threads(1)
    built: dict[str, Callable[[], dict]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = json.dumps(request["task"], sort_keys=True)
        try:
            if key not in built:
                task = request["task"]
                if warm_up(task):
                    make(task)()
                else:  # first-call costs (imports, caches) paid on a small instance of the same row
                    small = {"gw": 60, "lowrank": 500, "to tolerance": 256}.get(task["row"], 256)
                    make({**task, "n": small, **({"eps": 0.1} if task["row"] == "to tolerance" else {})})()
                built[key] = make(task)
            samples, result = [], {}
            for _ in range(request["repeats"]):
                start = time.perf_counter()
                result = built[key]()
                samples.append((time.perf_counter() - start) * 1e3)
            reply = {"ms": statistics.median(samples)}
            if "plan" in result:
                reply["error"] = marginal_l1(result.pop("plan"))
            reply.update(result)
        except Exception as error:  # a peer that fails is reported, not fatal
            reply = {"failed": f"{type(error).__name__}: {error}"[:200]}
        print(json.dumps(reply), flush=True)


# ============================================================================ the driver
class Worker:
    """One library's worker process, pinned to CPU 0, one thread for torch / BLAS / XLA."""

    def __init__(self, library: str):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
               "JAX_PLATFORMS": "cpu"}
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        self.process = subprocess.Popen(pin + [sys.executable, str(Path(__file__).resolve()), "--worker"], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, task: dict, repeats: int) -> dict:
        self.process.stdin.write(json.dumps({"task": task, "repeats": repeats}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            return {"failed": "worker exited"}
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def installed(library: str) -> bool:
    from importlib.util import find_spec

    return find_spec(MODULES[library]) is not None


def reference_error(task: dict) -> float:
    """Marginal L1 of the float64 reference plan of a Sinkhorn task (otalign log-domain, same iterations)."""
    import torch

    import otalign
    from otalign.solvers import Sinkhorn

    cost = torch.from_numpy(embeddings_cost(task["n"])).double()
    if task["row"] == "to tolerance":
        return task["tol"]
    plan = otalign.solve(otalign.Problem(cost, eps=task["eps"]), Sinkhorn(kernel="blocked"), max_iter=task["iters"],
                         tol=0, grad="detach")
    return marginal_l1(plan.matrix.numpy())


def group_key(task: dict) -> tuple:
    return tuple((k, v) for k, v in task.items() if k not in ("library", "entry", "ref", "steps"))


def fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan" if x is not None else ""
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
    return str(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke run")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2; 1 with --quick)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per task and round (median)")
    parser.add_argument("--out", type=Path, default=RESULTS / "peers.md")
    parser.add_argument("--report-only", type=Path, default=None, help="re-render --out from a saved JSON")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other rows of --out's JSON (from their own run, named in the header)")
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    if args.report_only is not None:
        write_report(json.loads(args.report_only.read_text()), args.out)
        return
    rounds = args.rounds or (1 if args.quick else 2)
    available = [lib for lib in LIBRARIES if installed(lib)]
    skipped = [lib for lib in LIBRARIES if lib not in available]
    todo = [t for t in tasks(args.rows, args.quick) if t["library"] in available]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if shutil.which("uptime") else ""
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    workers = {lib: Worker(lib) for lib in sorted({t["library"] for t in todo})}
    results: dict[int, list[dict]] = {i: [] for i in range(len(todo))}
    try:
        for round_index in range(rounds):
            for i, task in enumerate(todo):
                if task["row"] == "to tolerance" and round_index > 0:
                    continue
                task_spec = {k: v for k, v in task.items() if k != "ref"}
                reply = workers[task["library"]].run(task_spec, args.repeats)
                results[i].append(reply)
                print(f"round {round_index + 1}/{rounds} {task['row']} {task['entry']} "
                      f"{ {k: v for k, v in task.items() if k not in ('row', 'entry', 'library', 'ref')} } -> {reply}",
                      flush=True)
    finally:
        for w in workers.values():
            w.close()
    finished_uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if shutil.which("uptime") else ""
    raw = {"todo": todo, "results": results, "rounds": rounds, "repeats": args.repeats, "quick": args.quick,
           "skipped": skipped, "started": started, "uptime": uptime, "finished_uptime": finished_uptime}
    if args.merge and args.out.with_suffix(".json").exists():
        merge_earlier(raw, json.loads(args.out.with_suffix(".json").read_text()), args.rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    write_report(raw, args.out)


def merge_earlier(raw: dict, earlier: dict, rows: list[str]) -> None:
    """Add to ``raw`` the rows of an earlier run ``earlier`` that this run did not measure, with that run's start
    and load (named in the report's header)."""
    kept = [i for i, task in enumerate(earlier["todo"]) if task["row"] not in rows]
    offset = len(raw["todo"])
    for new_index, i in enumerate(kept):
        raw["todo"].append(earlier["todo"][i])
        raw["results"][offset + new_index] = earlier["results"][str(i)]
    earlier_runs = [run for run in earlier.get("earlier", []) if set(run["rows"]) - set(rows)]
    for run in earlier_runs:
        run["rows"] = [row for row in run["rows"] if row not in rows]
    own_rows = sorted({earlier["todo"][i]["row"] for i in kept} - {row for run in earlier_runs for row in run["rows"]})
    if own_rows:
        earlier_runs.append({"rows": own_rows, "started": earlier["started"], "uptime": earlier["uptime"]})
    raw["earlier"] = earlier_runs


def write_report(raw: dict, out: Path) -> None:
    """Render the measurements ``raw`` (the JSON written next to the table) as the markdown table ``out``."""
    results = {int(i): replies for i, replies in raw["results"].items()}
    options = argparse.Namespace(repeats=raw["repeats"], quick=raw["quick"])
    text = report(raw["todo"], results, raw["rounds"], options, raw["skipped"], raw["started"], raw["uptime"],
                  raw["finished_uptime"], raw.get("earlier", []))
    out.write_text(text)
    print(text)


def report(todo, results, rounds, args, skipped, started, uptime, finished_uptime, earlier=()) -> str:
    sys.path.insert(0, str(ROOT))
    from _common import machine, markdown_table

    groups: dict[tuple, list[int]] = {}
    for i, task in enumerate(todo):
        groups.setdefault(group_key(task), []).append(i)
    sections: dict[str, list[list]] = {}
    summary: list[list] = []

    def per_round(i: int):
        """Task ``i``'s time in each round (per step for low-rank), or ``None`` if it failed or its plan is broken
        (marginal L1 not finite or above 1: an all-zero plan has 2; in the tolerance row, above twice the target)."""
        replies = results[i]
        if not replies or any("failed" in r for r in replies):
            return None
        error = replies[-1].get("error")
        limit = 2 * todo[i]["tol"] if todo[i]["row"] == "to tolerance" else 1.0
        if error is not None and not (math.isfinite(error) and error < limit):
            return None
        return [r["ms"] / r.get("steps", 1) for r in replies]

    for key, members in groups.items():
        row = dict(key)["row"]
        peers = [(todo[i]["entry"], per_round(i)) for i in members if todo[i]["library"] != "otalign"]
        peers = [(name, times) for name, times in peers if times is not None]
        for i in members:
            mine = per_round(i) if todo[i]["library"] == "otalign" else None
            if mine is None or not peers:
                continue
            best_name, best = min(peers, key=lambda p: statistics.median(p[1]))
            rounds_both = min(len(mine), len(best))
            ratio = statistics.median(m / b for m, b in zip(mine[:rounds_both], best[:rounds_both]))
            setting = ", ".join(f"{k}={v}" for k, v in key if k != "row")
            summary.append([row, setting, todo[i]["entry"], fmt(statistics.median(mine)), best_name,
                            fmt(statistics.median(best)), fmt(ratio)])
        ref = next((i for i in members if todo[i]["ref"]), None)
        ref_error = reference_error(todo[members[0]]) if row in ("sinkhorn", "small eps", "to tolerance") else None
        params = ", ".join(f"{k}={v}" for k, v in key if k != "row")
        for i in members:
            replies = results[i]
            failed = next((r["failed"] for r in replies if "failed" in r), None)
            if failed:
                sections.setdefault(row, []).append([params, todo[i]["entry"], "failed", "", "", failed])
                continue
            ms = statistics.median(r["ms"] for r in replies)
            ratio = ""
            if ref is not None and all("ms" in r for r in results[ref]):
                ratio = statistics.median(r["ms"] / q["ms"] for r, q in zip(replies, results[ref]))
            last = replies[-1]
            if row == "lowrank":
                ms = ms / last["steps"]
                if ref is not None and all("ms" in r for r in results[ref]):
                    ref_steps = results[ref][-1]["steps"]
                    ratio = statistics.median((r["ms"] / last["steps"]) / (q["ms"] / ref_steps)
                                              for r, q in zip(replies, results[ref]))
            check = last.get("error", last.get("value"))
            extra = fmt(ref_error) if ref_error is not None else ""
            if "steps" in last:
                extra = f"{last['steps']} steps"
            if "iterations" in last:
                extra = (extra + "; " if extra else "") + f"{last['iterations']} iterations"
            sections.setdefault(row, []).append([params, todo[i]["entry"], fmt(ms), fmt(ratio), fmt(check), extra])
    headers = {
        "loss": ["setting", "library", "fwd+bwd (ms)", "ratio to plain torch", "loss value", ""],
        "sinkhorn": ["setting", "library", "solve + plan (ms)", "ratio to POT sinkhorn", "marginal L1",
                     "float64 reference's marginal L1"],
        "small eps": ["setting", "library", "solve + plan (ms)", "ratio to OTT lse", "marginal L1",
                      "float64 reference's marginal L1"],
        "gw": ["setting", "library", "solve (ms)", "ratio to POT", "marginal L1", ""],
        "lowrank": ["setting", "library", "ms per step", "ratio to POT (per step)", "factor marginal L1", "steps"],
        "to tolerance": ["setting", "library", "time (ms)", "ratio to POT sinkhorn", "marginal L1", "target; iterations"],
    }
    parts = [
        "# otalign against its peers, one core each\n",
        f"Machine: {machine()}. Started {started}; load at start: `{uptime}`; at the end: `{finished_uptime}`. "
        f"{rounds} interleaved round(s), {args.repeats} timed call(s) per task and round; ratios are medians of "
        f"same-round ratios (below 1: faster than the reference). Written by "
        f"`python benchmarks/peers.py{' --quick' if args.quick else ''}` (see its docstring for every setting).\n",
    ]
    for run in earlier:
        parts.append(f"Rows {', '.join(run['rows'])}: from an earlier run of the same script (`--merge`), started "
                     f"{run['started']}; load at start: `{run['uptime']}`.\n")
    if skipped:
        parts.append(f"Not installed, skipped: {', '.join(skipped)}.\n")
    if summary:
        parts.append(
            "## Summary: otalign against the fastest peer with a valid result\n\n"
            "Valid: no failure and a plan whose marginal L1 is finite and below 1 (kernel-domain peers at small eps "
            "return all-zero or NaN plans); in the tolerance row, below twice the target. Ratio: median of same-round otalign / peer times (below 1: otalign "
            "faster); ms per step for low-rank.\n\n"
            + markdown_table(["row", "setting", "otalign", "otalign ms", "fastest valid peer", "peer ms",
                              "otalign / peer"], summary) + "\n")
    for row in ROWS:
        if row in sections:
            parts.append(f"## {row}\n\n" + markdown_table(headers[row], sections[row]) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
