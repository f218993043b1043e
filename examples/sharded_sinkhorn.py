"""Sinkhorn between two large point clouds, rows split across processes (``otalign.distributed``).

Every process builds the same clouds ``x (n, d)`` and ``y (m, d)`` from one seed, keeps its contiguous block of the
rows of ``x`` (:func:`otalign.distributed.local_rows`) and all of ``y``, and solves the global problem with the
ordinary solver: row half-steps are local, column half-steps all-reduce a max and a sum per column. Nothing of size
n x m is ever stored (point-cloud cost blocks are recomputed), so each rank holds O((n/R + m) d) plus one block.

Run (one machine, 2 processes on CPU or one GPU each)::

    torchrun --nproc_per_node=2 examples/sharded_sinkhorn.py --points 200000 --dim 3 --iters 3

Several nodes: the same command on every node with ``--nnodes=N --node_rank=k --rdzv_backend=c10d
--rdzv_endpoint=HOST:PORT``. On CUDA each process uses ``cuda:LOCAL_RANK`` and NCCL; on CPU, gloo.
``--gloo`` forces gloo (e.g. several processes sharing one GPU, which NCCL refuses).
Prints, per rank, seconds per iteration and peak memory, and the global marginal errors.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch
import torch.distributed as dist

import otalign
from otalign.distributed import ShardedGeometry, local_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000, help="points in each cloud")
    parser.add_argument("--dim", type=int, default=3, help="dimension")
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--iters", type=int, default=3, help="Sinkhorn iterations (a fixed number: tol=0)")
    parser.add_argument("--gloo", action="store_true", help="use gloo even on CUDA")
    args = parser.parse_args()

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" and not args.gloo else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.points, args.dim, generator=gen)
    y = torch.randn(args.points, args.dim, generator=gen) * 0.8 + 0.5
    scale = 1.0 / args.dim  # costs of order 1
    rows = local_rows(args.points)
    x_local, y = (x[rows] * scale ** 0.5).to(device), (y * scale ** 0.5).to(device)
    del x

    geometry = ShardedGeometry(otalign.PointCloud(x_local, y, cost="sqeuclidean"))
    problem = otalign.Problem(geometry, eps=args.eps)
    dist.barrier()
    start, cpu_start = time.perf_counter(), time.process_time()
    plan = otalign.solve(problem, max_iter=args.iters, tol=0, grad="detach")
    if device.type == "cuda":
        torch.cuda.synchronize()
    cpu_per_iteration = (time.process_time() - cpu_start) / args.iters
    dist.barrier()
    per_iteration = (time.perf_counter() - start) / args.iters
    row_error, col_error = plan.marginal_error  # global (all-reduced): one more row and column pass

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        what = "peak CUDA memory allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        what = "peak resident memory"
    report = (f"rank {rank}/{world}: rows {rows.start}:{rows.stop} of {args.points} x {args.points} columns, "
              f"d={args.dim}, {device}: {per_iteration:.2f} s per iteration ({cpu_per_iteration:.2f} s of CPU), "
              f"{what} {peak:.0f} MiB")
    reports = [None] * world
    dist.all_gather_object(reports, report)
    if rank == 0:
        print("\n".join(reports))
        print(f"L1 marginal errors after {args.iters} iterations: rows {float(row_error):.3e}, "
              f"columns {float(col_error):.3e}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
