"""Per-call overhead of ``otalign.solve`` on a tiny problem, against a plain 10-line torch Sinkhorn loop.

Small solves are what GW inner solves, the domain-adaptation estimators, unrolled losses and small batches pay for:
there the Python work around the arithmetic dominates. For an 8 x 7 problem (float32, one thread) this measures

* the time per iteration of 50-iteration solves (``tol=0``) for each soft-min (``kernel=`` option), against the
  plain loop (ratio);
* the fixed cost of one ``solve`` call: a 1-iteration solve minus one iteration;
* a solve to ``tol=1e-6`` (stopping checks and the measurement of ``converged`` on the returned plan included).

CPU time of this process (``time.process_time``), medians: less sensitive to other processes on a shared machine.

Usage: ``python benchmarks/overhead.py [--repeats 200] [--out benchmarks/results/overhead.md]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import otalign
from otalign.solvers import Sinkhorn

KERNELS = ("auto", "blocked", "dense", "absorbed")


def plain_loop(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, iterations: int):
    """Log-domain Sinkhorn in plain torch (the reference a user would write)."""
    f, g = torch.zeros_like(a), torch.zeros_like(b)
    log_a, log_b = a.log(), b.log()
    for _ in range(iterations):
        f = -eps * torch.logsumexp((g[None, :] - C) / eps + log_b[None, :], dim=1)
        g = -eps * torch.logsumexp((f[:, None] - C) / eps + log_a[:, None], dim=0)
    return f, g


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure(repeats: int) -> list[tuple[str, float, float]]:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    C = torch.rand(8, 7, generator=gen)
    a, b = torch.full((8,), 1 / 8), torch.full((7,), 1 / 7)
    eps, iterations = 0.1, 50
    problem = otalign.Problem(C, a, b, eps=eps)
    plain = median_seconds(lambda: plain_loop(C, a, b, eps, iterations), repeats) / iterations
    rows = [("plain torch loop, per iteration", plain * 1e6, 1.0)]
    for kernel in KERNELS:
        solver = Sinkhorn(kernel=kernel)
        per_iter = median_seconds(lambda: otalign.solve(problem, solver, max_iter=iterations, tol=0), repeats)
        per_iter /= iterations
        rows.append((f"kernel={kernel!r}, per iteration (50-iteration solve)", per_iter * 1e6, per_iter / plain))
    solver = Sinkhorn()
    one = median_seconds(lambda: otalign.solve(problem, solver, max_iter=1, tol=0), repeats)
    eleven = median_seconds(lambda: otalign.solve(problem, solver, max_iter=11, tol=0), repeats)
    fixed = one - (eleven - one) / 10  # a 1-iteration solve minus the slope of 1 -> 11 iterations
    rows.append(("fixed cost of one solve call (1-iteration solve minus one iteration)", fixed * 1e6, float("nan")))
    tolerance = median_seconds(lambda: otalign.solve(problem, solver, tol=1e-6), repeats)
    rows.append(("solve to tol=1e-6 (whole call)", tolerance * 1e6, float("nan")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = measure(args.repeats)
    lines = ["| what (8 x 7, float32, 1 thread) | microseconds | ratio to the plain loop |", "|---|---|---|"]
    lines += [f"| {name} | {us:.1f} | {'' if ratio != ratio else f'{ratio:.2f}x'} |" for name, us, ratio in rows]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
