"""Sinkhorn divergence as a loss (value + gradient w.r.t. the points): otalign vs geomloss, in one run.

* ``--part tensorized``: n = m = 4096, d = 3 and d = 128, float32, one thread each: geomloss's
  ``SamplesLoss("sinkhorn", backend="tensorized")`` against :class:`otalign.losses.SinkhornDivergence` with the same
  ``p = 2``, ``blur = 0.05``, ``scaling = 0.5`` (so the same eps schedule and the same number of steps), both
  backends of otalign (``"online"``: point-cloud blocks, the default for p = 2; ``"tensorized"``: stored matrices).
* ``--part keops``: geomloss's online backend (pykeops) at n = m = 20,000, d = 3, if pykeops imports.
* ``--part large``: otalign online at n = m = 100,000, d = 3 (float32, the default threads), in a fresh process:
  time and peak resident memory.

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


def _timed(loss, x: torch.Tensor, y: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Best wall time (s) of ``loss(x, y)`` and its backward w.r.t. ``x``, and the value."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        xg = x.clone().requires_grad_()
        start = time.perf_counter()
        out = loss(xg, y)
        out.backward()
        best = min(best, time.perf_counter() - start)
        value = float(out.detach())
    return best, value


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
        times, values = {}, {}
        for name, loss in losses.items():
            times[name], values[name] = _timed(loss, x, y, repeats)
            print(json.dumps({"d": d, "loss": name, "seconds": times[name], "value": values[name]}), flush=True)
        base = times["geomloss tensorized"]
        for name in losses:
            records.append({"n": 4096, "d": d, "loss": name, "seconds": times[name], "speedup": base / times[name],
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
    t_keops, v_keops = _timed(keops, x, y, repeats)
    t_ours, v_ours = _timed(ours, x, y, repeats)
    return [{"n": 20000, "d": 3, "loss": "geomloss online (KeOps)", "seconds": t_keops, "speedup": 1.0,
             "value_diff": 0.0},
            {"n": 20000, "d": 3, "loss": "otalign online", "seconds": t_ours, "speedup": t_keops / t_ours,
             "value_diff": abs(v_ours - v_keops)}]


def part_large() -> list[dict]:
    """In a fresh process: the peak resident memory is then this run's alone."""
    code = (
        "import json, sys, time, torch\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from _common import peak_rss_mb, reset_peak_rss\n"
        "from divergence import _clouds, BLUR, SCALING\n"
        "from otalign.losses import SinkhornDivergence\n"
        "x, y = _clouds(100000, 3)\n"
        "reset_peak_rss(); before = peak_rss_mb()\n"
        "xg = x.clone().requires_grad_()\n"
        "start = time.perf_counter()\n"
        "value = SinkhornDivergence(p=2, blur=BLUR, scaling=SCALING, backend='online')(xg, y)\n"
        "forward = time.perf_counter() - start\n"
        "value.backward()\n"
        "total = time.perf_counter() - start\n"
        "print(json.dumps({'n': 100000, 'd': 3, 'threads': torch.get_num_threads(), 'forward_s': forward,\n"
        "                  'total_s': total, 'peak_rss_mb': peak_rss_mb(), 'rss_before_mb': before,\n"
        "                  'value': float(value), 'grad_finite': bool(torch.isfinite(xg.grad).all())}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [json.loads(done.stdout.strip().splitlines()[-1])]


def render(results: dict) -> str:
    lines = ["# Sinkhorn divergence as a loss: otalign vs geomloss", "",
             "Value and gradient w.r.t. the points of the debiased Sinkhorn divergence, `p = 2`, "
             f"`blur = {BLUR}`, `scaling = {SCALING}` (the same eps schedule, hence the same number of steps, in "
             "both libraries), float32, uniform weights, x ~ U[0,1]^d, y ~ U[0.3,1.1]^d. "
             "Command: `python benchmarks/divergence.py --part tensorized|keops|large`.", ""]
    if "tensorized" in results:
        part = results["tensorized"]
        lines += ["## n = m = 4096, one thread each", "", f"Machine: {part['machine']}.", "",
                  markdown_table(["d", "loss", "seconds (value + gradient)", "speed-up vs geomloss tensorized",
                                  "abs. value difference"],
                                 [[r["d"], r["loss"], r["seconds"], f"{r['speedup']:.2f}x", f"{r['value_diff']:.1e}"]
                                  for r in part["records"]]), ""]
    if "keops" in results:
        part = results["keops"]
        lines += ["## n = m = 20,000, d = 3: geomloss online (KeOps)", ""]
        if "skipped" in part["records"][0]:
            lines += [f"Not measured: {part['records'][0]['skipped']}.", ""]
        else:
            lines += [f"Machine: {part['machine']}.", "",
                      markdown_table(["loss", "seconds", "speed-up vs KeOps", "abs. value difference"],
                                     [[r["loss"], r["seconds"], f"{r['speedup']:.2f}x", f"{r['value_diff']:.1e}"]
                                      for r in part["records"]]), ""]
    if "large" in results:
        r = results["large"]["records"][0]
        lines += ["## n = m = 100,000, d = 3, online (one run)", "", f"Machine: {results['large']['machine']}.", "",
                  markdown_table(["threads", "forward s", "value + gradient s", "peak RSS MB", "gradient finite"],
                                 [[r["threads"], r["forward_s"], r["total_s"], r["peak_rss_mb"], r["grad_finite"]]]),
                  "", "Peak RSS is that of the whole process (Python, torch and the points included).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("tensorized", "keops", "large"), action="append", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    store = RESULTS / "divergence.json"
    for part in args.part:
        if part == "tensorized":
            records = part_tensorized(args.repeats)
        elif part == "keops":
            records = part_keops(args.repeats)
        else:
            records = part_large()
        results = json.loads(store.read_text()) if store.is_file() else {}  # re-read: parts may run side by side
        results[part] = {"machine": machine(), "records": records}
        store.write_text(json.dumps(results, indent=2))
        (RESULTS / "divergence.md").write_text(render(results))
        print(json.dumps(records), flush=True)


if __name__ == "__main__":
    main()
