"""Loss benchmark: forward + backward time of every ``otalign.losses`` loss against a plain torch InfoNCE, in the
same rounds.

Batches of two views ``z0, z1`` (``N`` x 128, float32; ``z1`` a noisy copy of ``z0``) with ``2N`` in
{512, 1024, 4096}; each loss at its defaults (GCA losses: 10 Sinkhorn iterations, gradients unrolled), SupCon with
10 random classes. One sample is ``loss(z0, z1).backward()``. Besides the losses as users call them (the fused dense
path, :mod:`otalign.losses.fused`), the GCA presets are also timed on the general aligner path (the same default
solver passed as an instance: cost -> Problem -> solver -> Plan -> divergence), which is what every loss ran before
the fused path existed: before / after in one run. The baselines are a plain 10-line torch InfoNCE
(:func:`plain_infonce`) and lightly's ``NTXentLoss`` when lightly is installed.

Everything is timed in interleaved rounds (each round times every entry once) so that load changes on a shared
machine hit all of them alike; the table reports the median over rounds and the ratio to the plain InfoNCE's median
of the same rounds. Targets: otalign InfoNCE <= 1.1x, GCAInfoNCE <= 1.5x, GCARINCE <= 1.6x, GCAUOT <= 2.0x the
plain InfoNCE, and InfoNCE below lightly's NTXentLoss.

Run: ``python benchmarks/losses.py`` (a few minutes; one torch thread by default); ``--quick`` for a smoke run.
Writes ``benchmarks/results/losses.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

import otalign
from otalign import losses

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LOSSES = ["InfoNCE", "NTXent", "GCAInfoNCE", "RINCE", "GCARINCE", "GCAUOT", "SupCon"]
GENERAL = ["InfoNCE", "GCAInfoNCE", "GCARINCE", "GCAUOT"]
TARGETS = {"InfoNCE": 1.1, "GCAInfoNCE": 1.5, "GCARINCE": 1.6, "GCAUOT": 2.0}
PLAIN = "plain torch InfoNCE"
LIGHTLY = "lightly NTXentLoss"


def plain_infonce(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """The textbook NT-Xent in plain torch: the baseline every ratio is taken to."""
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    logits = z @ z.T / temperature
    rows = z.shape[0]
    logits = logits.masked_fill(torch.eye(rows, dtype=torch.bool, device=z.device), float("-inf"))
    labels = torch.arange(rows, device=z.device).roll(rows // 2)
    return F.cross_entropy(logits, labels)


def batch(n: int, dim: int = 128, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, dim, generator=gen)
    z1 = z0 + 0.5 * torch.randn(n, dim, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return z0.requires_grad_(), z1.requires_grad_(), labels


def entries() -> dict[str, Callable]:
    """Name -> loss callable ``(z0, z1, labels)``: baselines, the losses, the general path of the GCA presets."""
    out: dict[str, Callable] = {PLAIN: lambda z0, z1, labels: plain_infonce(z0, z1)}
    try:
        from lightly.loss import NTXentLoss

        lightly_loss = NTXentLoss(temperature=0.5)
        out[LIGHTLY] = lambda z0, z1, labels: lightly_loss(z0, z1)
    except ImportError:
        pass
    for name in LOSSES:
        fn = getattr(losses, name)()
        out[name] = (lambda f: lambda z0, z1, labels: f(z0, z1, labels=labels))(fn) if name == "SupCon" else (
            lambda f: lambda z0, z1, labels: f(z0, z1))(fn)
    for name in GENERAL:
        fn = getattr(losses, name)(solver=otalign.solvers.get("sinkhorn"))
        out[f"{name} (general path)"] = (lambda f: lambda z0, z1, labels: f(z0, z1))(fn)
    return out


def step(fn: Callable, z0, z1, labels) -> float:
    """Wall time (ms) of one forward + backward."""
    z0.grad = z1.grad = None
    start = time.perf_counter()
    fn(z0, z1, labels).backward()
    return (time.perf_counter() - start) * 1e3


def measure(two_n: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median time (ms) and median same-round ratio to the plain InfoNCE of every entry."""
    z0, z1, labels = batch(two_n // 2)
    fns = entries()
    for fn in fns.values():  # warm-up
        step(fn, z0, z1, labels)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(step(fn, z0, z1, labels))
    ratios = {name: statistics.median(t / b for t, b in zip(values, samples[PLAIN])) for name, values in samples.items()}
    return {name: statistics.median(values) for name, values in samples.items()}, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2N = 256 and 512 only, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per size (default 15, 5 at 4096)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts to run with")
    args = parser.parse_args()
    sizes = [256, 512] if args.quick else [512, 1024, 4096]
    where = f"{machine()}; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    sections = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows, verdicts = [], []
        for two_n in sizes:
            rounds = args.rounds or (3 if args.quick else (5 if two_n >= 4096 else 15))
            times, ratios = measure(two_n, rounds)
            for name in times:
                rows.append([two_n, name, times[name], ratios[name]])
                print(f"{threads} thread(s) 2N={two_n:5d} {name:28s} {times[name]:9.2f} ms  x{ratios[name]:.2f}",
                      flush=True)
            for name, limit in TARGETS.items():
                verdicts.append(f"{name} <= {limit}x at 2N = {two_n}: {'met' if ratios[name] <= limit else 'not met'} "
                                f"(x{ratios[name]:.2f})")
            if LIGHTLY in ratios:
                below = ratios["InfoNCE"] < ratios[LIGHTLY]
                verdicts.append(f"InfoNCE below lightly at 2N = {two_n}: {'met' if below else 'not met'} "
                                f"(x{ratios['InfoNCE']:.2f} vs x{ratios[LIGHTLY]:.2f})")
        header = ["2N", "loss", "forward+backward (ms)", "same-round ratio to plain InfoNCE"]
        summary = "Targets:\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n\n"
        sections.append(f"## {threads} torch thread(s)\n\n{summary}" + markdown_table(header, rows) + "\n")
    text = (
        "# Loss benchmark: forward + backward vs a plain torch InfoNCE\n\n"
        f"Machine: {where}.\n\n"
        "d = 128, float32, two views, each loss at its defaults (GCA losses: 10 iterations, unrolled, temperature "
        "0.5); median over interleaved rounds, ratios taken within each round. \"general path\": the same loss on "
        "the aligner path (cost -> Problem -> solver -> Plan -> divergence; what every loss ran before the fused "
        "path). Written by `benchmarks/losses.py`.\n\n" + "\n".join(sections)
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "losses.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
