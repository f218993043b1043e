"""Sinkhorn divergence as a loss (value + gradient w.r.t. the points): otalign vs geomloss, in one run.

* ``--part tensorized``: n = m = 4096, d = 3 and d = 128, float32, one thread each: geomloss's
  ``SamplesLoss("sinkhorn", backend="tensorized")`` against :class:`otalign.losses.SinkhornDivergence` with the same
  ``p = 2``, ``blur = 0.05``, ``scaling = 0.5`` (so the same eps schedule and the same number of steps), both
  backends of otalign (``"online"``: point-cloud blocks, the default for p = 2; ``"tensorized"``: stored matrices).
* ``--part keops``: geomloss's online backend (pykeops) at n = m = 20,000, d = 3, if pykeops imports.
* ``--part large``: otalign online at n = m = 100,000 (``--large-n``), d = 3 (float32, the default threads), in a
  fresh process: time and peak resident memory of the value (with ``--large-gradient`` also of its gradient);
  ``--large-scaling`` shortens the schedule (time is linear in its length).

Each part updates ``benchmarks/results/divergence.json``; the markdown table ``divergence.md`` is rewritten from it.
Run: ``python benchmarks/divergence.py --part tensorized`` (several minutes), ``--part large`` (tens of minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BLUR, SCALING = 0.05, 0.5


def _clouds(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=gen), torch.rand(n, d, generator=gen) * 0.8 + 0.3


def _timed(loss, x: torch.Tensor, y: torch.Tensor, repeats: int) -> tuple[float, float, float]:
    """Best wall time and best CPU time of this process (s) of ``loss(x, y)`` and its backward w.r.t. ``x``, and
    the value. On a shared machine the CPU time is the fairer figure: it does not count the time other processes
    held the cores."""
    wall, cpu, value = float("inf"), float("inf"), float("nan")
    for _ in range(repeats):
        xg = x.clone().requires_grad_()
        start, start_cpu = time.perf_counter(), time.process_time()
        out = loss(xg, y)
        out.backward()
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
        value = float(out.detach())
    return wall, cpu, value


def part_tensorized(repeats: int) -> list[dict]:
    import geomloss

    from otalign.losses import SinkhornDivergence

    torch.set_num_threads(1)
    records = []
    for d in (3, 128):
        x, y = _clouds(4096, d)
        losses = {
            "geomloss tensorized": geomloss.SamplesLoss("sinkhorn", p=2, blur=BLUR, scaling=SCALING,
                                                        backend="tensorized"),
            "otalign online": SinkhornDivergence(p=2, blur=BLUR, scaling=SCALING, backend="online"),
            "otalign tensorized": SinkhornDivergence(p=2, blur=BLUR, scaling=SCALING, backend="tensorized"),
        }
        times, cpus, values = {}, {}, {}
        for name, loss in losses.items():
            times[name], cpus[name], values[name] = _timed(loss, x, y, repeats)
            print(json.dumps({"d": d, "loss": name, "seconds": times[name], "cpu_seconds": cpus[name],
                              "value": values[name]}), flush=True)
        base, base_cpu = times["geomloss tensorized"], cpus["geomloss tensorized"]
        for name in losses:
            records.append({"n": 4096, "d": d, "loss": name, "seconds": times[name], "cpu_seconds": cpus[name],
                            "speedup": base / times[name], "cpu_speedup": base_cpu / cpus[name],
                            "value_diff": abs(values[name] - values["geomloss tensorized"])})
    return records


def part_keops(repeats: int) -> list[dict]:
    try:
        import pykeops  # noqa: F401
    except ImportError as error:
        return [{"skipped": f"pykeops does not import here ({error})"}]
    import geomloss

    from otalign.losses import SinkhornDivergence

    torch.set_num_threads(1)
    x, y = _clouds(20000, 3)
    keops = geomloss.SamplesLoss("sinkhorn", p=2, blur=BLUR, scaling=SCALING, backend="online")
    ours = SinkhornDivergence(p=2, blur=BLUR, scaling=SCALING, backend="online")
    _timed(keops, x[:100], y[:100], 1)  # compile the KeOps kernels
    t_keops, c_keops, v_keops = _timed(keops, x, y, repeats)
    t_ours, c_ours, v_ours = _timed(ours, x, y, repeats)
    return [{"n": 20000, "d": 3, "loss": "geomloss online (KeOps)", "seconds": t_keops, "cpu_seconds": c_keops,
             "speedup": 1.0, "cpu_speedup": 1.0, "value_diff": 0.0},
            {"n": 20000, "d": 3, "loss": "otalign online", "seconds": t_ours, "cpu_seconds": c_ours,
             "speedup": t_keops / t_ours, "cpu_speedup": c_keops / c_ours, "value_diff": abs(v_ours - v_keops)}]


def part_large(scaling: float, n: int, gradient: bool) -> dict:
    """One online run in a fresh process (so that the peak resident memory is this run's alone): the value, and
    with ``gradient`` its backward w.r.t. ``x``. ``scaling`` sets the number of annealing steps (memory does not
    depend on it; forward time is linear in it)."""
    code = (
        "import json, sys, time, torch\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from _common import peak_rss_mb, reset_peak_rss\n"
        "from divergence import _clouds, BLUR\n"
        "from otalign.symmetric_sinkhorn import annealing_schedule, bounding_diameter\n"
        "from otalign.losses import SinkhornDivergence\n"
        f"x, y = _clouds({n}, 3)\n"
        "reset_peak_rss(); before = peak_rss_mb()\n"
        f"xg = x.clone().requires_grad_({gradient!r})\n"
        "start, start_cpu = time.perf_counter(), time.process_time()\n"
        f"value = SinkhornDivergence(p=2, blur=BLUR, scaling={scaling!r}, backend='online')(xg, y)\n"
        "forward, forward_cpu = time.perf_counter() - start, time.process_time() - start_cpu\n"
        f"if {gradient!r}: value.backward()\n"
        "total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu\n"
        f"steps = len(annealing_schedule(2, bounding_diameter(x, y), BLUR, {scaling!r})) + 2\n"
        f"print(json.dumps({{'n': {n}, 'd': 3, 'scaling': {scaling!r}, 'steps': steps, 'gradient': {gradient!r},\n"
        "                  'threads': torch.get_num_threads(), 'forward_s': forward, 'forward_cpu_s': forward_cpu,\n"
        "                  'total_s': total, 'total_cpu_s': total_cpu, 'peak_rss_mb': peak_rss_mb(),\n"
        "                  'rss_before_mb': before, 'value': float(value.detach()),\n"
        "                  'finite': bool(torch.isfinite(value))\n"
        "                            and (xg.grad is None or bool(torch.isfinite(xg.grad).all()))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(results: dict) -> str:
    lines = ["# Sinkhorn divergence as a loss: otalign vs geomloss", "",
             "Value and gradient w.r.t. the points of the debiased Sinkhorn divergence, `p = 2`, "
             f"`blur = {BLUR}`, `scaling = {SCALING}` (the same eps schedule, hence the same number of steps, in "
             "both libraries), float32, uniform weights, x ~ U[0,1]^d, y ~ U[0.3,1.1]^d. "
             "Command: `python benchmarks/divergence.py --part tensorized|keops|large`. "
             "The machine's 2 cores are shared with other jobs: wall times include waiting for them; the CPU time "
             "of the benchmark process (KeOps's threads included) does not, and is the fairer comparison.", ""]
    if "tensorized" in results:
        part = results["tensorized"]
        lines += ["## n = m = 4096, one thread each", ""] + _note(part) + [f"Machine: {part['machine']}.", "",
                  markdown_table(["d", "loss", "wall s (value + gradient)", "CPU s", "speed-up (wall)",
                                  "speed-up (CPU)", "abs. value difference"],
                                 [_row(r, [r["d"], r["loss"]]) for r in part["records"]]), ""]
    if "keops" in results:
        part = results["keops"]
        lines += ["## n = m = 20,000, d = 3: geomloss online (KeOps)", ""] + _note(part)
        if "skipped" in part["records"][0]:
            lines += [f"Not measured: {part['records'][0]['skipped']}.", ""]
        else:
            lines += [f"Machine: {part['machine']}.", "",
                      markdown_table(["loss", "wall s (value + gradient)", "CPU s", "speed-up (wall)",
                                      "speed-up (CPU)", "abs. value difference"],
                                     [_row(r, [r["loss"]]) for r in part["records"]]), ""]
    if "large" in results:
        lines += ["## Large online runs, d = 3", "", f"Machine: {results['large']['machine']}.", "",
                  markdown_table(["n = m", "scaling", "soft-min steps", "gradient", "threads", "forward wall s",
                                  "forward CPU s", "total wall s", "total CPU s", "peak RSS MB", "finite"],
                                 [[r["n"], r["scaling"], r["steps"], r["gradient"], r["threads"], r["forward_s"],
                                   r["forward_cpu_s"], r["total_s"], r["total_cpu_s"], r["peak_rss_mb"], r["finite"]]
                                  for r in results["large"]["records"]]),
                  "", "Peak RSS is that of the whole process (Python and torch alone hold about 500 MB). Memory does "
                  "not depend on the number of steps; each step is one batched soft-min over the four n x n cost "
                  "blocks (never stored), so forward time is proportional to the steps.", ""]
    return "\n".join(lines)


def _note(part: dict) -> list[str]:
    """A part's ``note`` (added to the results file by hand: circumstances of a run), as a paragraph."""
    return [part["note"], ""] if part.get("note") else []


def _row(record: dict, lead: list) -> list:
    cpu = record.get("cpu_seconds", "–")
    cpu_speedup = f"{record['cpu_speedup']:.2f}x" if "cpu_speedup" in record else "–"
    return lead + [record["seconds"], cpu, f"{record['speedup']:.2f}x", cpu_speedup, f"{record['value_diff']:.1e}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("tensorized", "keops", "large"), action="append", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--large-scaling", type=float, default=SCALING,
                        help="scaling of the large run (fewer steps when smaller)")
    parser.add_argument("--large-n", type=int, default=100000, help="points per cloud of the large run")
    parser.add_argument("--large-gradient", action="store_true", help="the large run also computes the gradient")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    store = RESULTS / "divergence.json"
    for part in args.part:
        if part == "tensorized":
            records = part_tensorized(args.repeats)
        elif part == "keops":
            records = part_keops(args.repeats)
        else:
            record = part_large(args.large_scaling, args.large_n, args.large_gradient)
            previous = json.loads(store.read_text()).get("large", {}).get("records", []) if store.is_file() else []
            records = [r for r in previous if (r.get("n"), r.get("gradient")) != (record["n"], record["gradient"])]
            records.append(record)
        results = json.loads(store.read_text()) if store.is_file() else {}  # re-read: parts may run side by side
        results[part] = {"machine": machine(), "records": records}
        store.write_text(json.dumps(results, indent=2))
        (RESULTS / "divergence.md").write_text(render(results))
        print(json.dumps(records), flush=True)


if __name__ == "__main__":
    main()
