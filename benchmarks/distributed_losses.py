"""Distributed GCA-InfoNCE: each rank solving its own rows (sharded) against each rank solving the whole plan.

Run under torchrun, once per mode::

    torchrun --nproc_per_node=2 benchmarks/distributed_losses.py --mode sharded
    torchrun --nproc_per_node=2 benchmarks/distributed_losses.py --mode replicated

``sharded`` is ``GCAInfoNCE(gather_distributed=True)``: rank r holds the ``(V N_r, V N)`` rows of the cost and plan.
``replicated`` is what every rank did before: gather the embeddings and solve the whole ``(V N, V N)`` plan (here:
the single-process loss on the gathered batch, which takes the kernel-domain fast path for dense costs).
After a warm-up on a tiny batch, each rank times ``loss.backward()`` (median over rounds) and reports the growth of its peak resident memory over
the baseline taken before the first loss call (a process-lifetime maximum, hence one mode per launch). Appends a
row per rank to ``benchmarks/results/distributed_losses.md``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist

from otalign import losses
from otalign.losses import gather as distributed

RESULTS = Path(__file__).resolve().parent / "results" / "distributed_losses.md"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("sharded", "replicated"), required=True)
    parser.add_argument("--samples", type=int, default=2048, help="global batch N (two views: 2N anchors)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(args.samples, args.dim, generator=gen)
    z1 = z0 + 0.5 * torch.randn(args.samples, args.dim, generator=gen)
    mine = slice(rank * args.samples // world, (rank + 1) * args.samples // world)
    z0, z1 = z0[mine].clone().requires_grad_(), z1[mine].clone().requires_grad_()
    loss_fn = losses.GCAInfoNCE(gather_distributed=args.mode == "sharded")

    def step(a, b) -> None:
        if args.mode == "sharded":
            loss_fn(a, b).backward()
        else:
            loss_fn(distributed.gather(a), distributed.gather(b)).backward()

    step(z0[:4], z1[:4])  # warm-up on a tiny batch: lazy initialisations do not count
    baseline = peak_mib()
    times = []
    for _ in range(args.rounds):
        dist.barrier()
        start = time.perf_counter()
        step(z0, z1)
        dist.barrier()
        times.append(time.perf_counter() - start)
    row = (f"| {args.mode} | {world} | {rank} | {2 * args.samples} | {statistics.median(times) * 1000:.0f} | "
           f"{peak_mib() - baseline:.0f} |")
    rows = [None] * world
    dist.all_gather_object(rows, row)
    if rank == 0:
        if not RESULTS.exists():
            RESULTS.write_text(
                "# Distributed GCA-InfoNCE: sharded rows vs the whole plan on every rank\n\n"
                "Written by `benchmarks/distributed_losses.py` (torchrun, gloo, float32, d = 128, 10 iterations, "
                "forward + backward, median over rounds; memory: growth of peak RSS over the baseline).\n\n"
                "| mode | ranks | rank | anchors 2N | forward+backward (ms) | peak memory growth (MiB) |\n"
                "|---|---|---|---|---|---|\n"
            )
        with RESULTS.open("a") as out:
            out.write("\n".join(rows) + "\n")
        print("\n".join(rows))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
