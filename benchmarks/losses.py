"""Loss benchmark: forward + backward time of every ``otalign.losses`` loss against InfoNCE, in the same run.

Batches of two views ``z0, z1`` (``N`` x 128, float32; ``z1`` a noisy copy of ``z0``) with ``2N`` in
{256, 1024, 4096}; each loss at its defaults (GCA losses: 10 Sinkhorn iterations, gradients unrolled), SupCon with
10 random classes. One sample is ``loss(z0, z1).backward()``. The losses are timed in interleaved rounds (each
round times every loss once) so that load changes on a shared machine hit all of them alike; the table reports
the median over rounds and the ratio to InfoNCE's median. The issue's target: GCA-InfoNCE at most 2x InfoNCE at
``2N = 1024`` on CPU.

Run: ``python benchmarks/losses.py`` (a few minutes on 2 CPU cores); ``--quick`` for a smoke run.
Writes ``benchmarks/results/losses.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from otalign import losses

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LOSSES = ["InfoNCE", "NTXent", "GCAInfoNCE", "RINCE", "GCARINCE", "GCAUOT", "SupCon"]


def batch(n: int, dim: int = 128, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, dim, generator=gen)
    z1 = z0 + 0.5 * torch.randn(n, dim, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return z0.requires_grad_(), z1.requires_grad_(), labels


def step(loss_fn, z0, z1, labels) -> float:
    """Wall time (ms) of one forward + backward."""
    z0.grad = z1.grad = None
    start = time.perf_counter()
    kwargs = {"labels": labels} if isinstance(loss_fn, losses.SupCon) else {}
    loss_fn(z0, z1, **kwargs).backward()
    return (time.perf_counter() - start) * 1e3


def measure(two_n: int, rounds: int) -> dict[str, float]:
    z0, z1, labels = batch(two_n // 2)
    fns = {name: getattr(losses, name)() for name in LOSSES}
    for fn in fns.values():  # warm-up
        step(fn, z0, z1, labels)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(step(fn, z0, z1, labels))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2N = 256 and 1024 only, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per size (default 9, 5 at 4096)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[torch.get_num_threads()], help="torch thread counts to run with"
    )
    args = parser.parse_args()
    sizes = [256, 1024] if args.quick else [256, 1024, 4096]
    where = f"{machine()}; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    sections = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows = []
        for two_n in sizes:
            rounds = args.rounds or (3 if args.quick else (5 if two_n >= 4096 else 9))
            times = measure(two_n, rounds)
            base = times["InfoNCE"]
            for name in LOSSES:
                ratio = times[name] / base
                rows.append([two_n, name, times[name], ratio])
                print(f"{threads} thread(s) 2N={two_n:5d} {name:11s} {times[name]:9.2f} ms  x{ratio:.2f}", flush=True)
                if two_n == 1024 and name == "GCAInfoNCE":
                    verdict = "met" if ratio <= 2 else "not met"
                    target = f"Target GCA-InfoNCE <= 2x InfoNCE at 2N = 1024: {verdict} (x{ratio:.2f})."
        header = ["2N", "loss", "forward+backward (ms)", "ratio to InfoNCE"]
        summary = f"{target}\n\n" if 1024 in sizes else ""
        sections.append(f"## {threads} torch thread(s)\n\n{summary}" + markdown_table(header, rows) + "\n")
    text = (
        "# Loss benchmark: forward + backward vs InfoNCE\n\n"
        f"Machine: {where}.\n\n"
        "d = 128, float32, two views, each loss at its defaults (GCA losses: 10 iterations, unrolled); median over "
        "interleaved rounds. Written by `benchmarks/losses.py`.\n\n" + "\n".join(sections)
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "losses.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
