"""Sharded solves agree on their arguments before the first collective (:func:`otalign.distributed.agree_solve`):
for every argument that must be the same on every rank, a mismatch on one rank makes both ranks raise the same
:class:`~otalign.distributed.DistributedInputError`, naming the argument; matching arguments pass. 2 gloo
processes, one spawn for all cases."""

from __future__ import annotations

import math
import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import otalign
from otalign.distributed import ShardedGeometry, agree_solve
from otalign.checks import trusted

BASE = {"eps": 0.1, "rho_a": math.inf, "rho_b": 1.0, "reference": "product"}
OPTIONS = {"max_iter": 100, "tol": 1e-6, "grad": "unroll", "inner_iter": 5}

#: argument -> (what the error must name, how rank 1 changes its inputs)
CASES = {
    "none": (None, {}),
    "y entry": ("y", {"y": lambda y: y + torch.eye(*y.shape, dtype=y.dtype) * 1e-6}),
    "y permuted": ("y", {"y": lambda y: y.flip(0)}),
    "b": ("b", {"b": lambda b: b.flip(0)}),
    "eps": ("eps", {"problem": {"eps": 0.2}}),
    "rho_a": ("rho_a", {"problem": {"rho_a": 5.0}}),
    "rho_b": ("rho_b", {"problem": {"rho_b": 2.0}}),
    "reference": ("reference", {"problem": {"reference": "uniform"}}),
    "max_iter": ("max_iter", {"options": {"max_iter": 101}}),
    "tol": ("tol", {"options": {"tol": 1e-7}}),
    "grad": ("grad", {"options": {"grad": "detach"}}),
    "constructor option": ("inner_iter", {"options": {"inner_iter": 6}}),
    "solver name": ("solver", {"solver": "unbalanced"}),
    "solver instance": ("solver", {"solver": otalign.solvers.get("proximal", inner_iter=3)}),
    "init": ("init (column potential g)", {"options": {"init": (torch.zeros(2), torch.ones(5))}}),
}


def inputs(rank: int, change: dict):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64)
    b = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    rows = slice(0, 2) if rank == 0 else slice(2, 6)  # uneven blocks
    mine = change if rank == 1 else {}
    y = mine.get("y", lambda t: t)(y)
    b = mine.get("b", lambda t: t)(b / b.sum())
    problem_args = {**BASE, **mine.get("problem", {})}
    with trusted():  # the problem's own agreement would catch eps / rho / reference first
        problem = otalign.Problem(ShardedGeometry(otalign.PointCloud(x[rows], y)), b=b, **problem_args)
    options = {**OPTIONS, "init": (torch.zeros(rows.stop - rows.start, dtype=torch.float64),
                                   torch.zeros(5, dtype=torch.float64))}
    for key, value in mine.get("options", {}).items():
        if key == "init":
            value = (torch.zeros(rows.stop - rows.start, dtype=torch.float64), value[1].to(torch.float64))
        options[key] = value
    return problem, mine.get("solver", "proximal"), options


def worker(rank, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    outcome = {}
    try:
        for name, (_, change) in CASES.items():
            problem, solver, options = inputs(rank, change)
            try:
                agree_solve(problem, solver, options)
                outcome[name] = ("ok", "")
            except otalign.distributed.DistributedInputError as error:
                outcome[name] = ("error", str(error))
        problem, solver, options = inputs(rank, {})
        plan = otalign.solve(problem, solver, **{k: v for k, v in options.items() if k != "init"})
        outcome["value after agreement"] = ("value", float(plan.value))
        torch.save(outcome, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::otalign.solver.ConvergenceWarning")
def test_every_agreed_argument_mismatch_is_the_same_error_on_every_rank(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, (argument, _) in CASES.items():
        (kind0, message0), (kind1, message1) = ranks[0][name], ranks[1][name]
        if argument is None:
            assert kind0 == kind1 == "ok", (name, message0)
            continue
        assert kind0 == kind1 == "error", (name, ranks[0][name], ranks[1][name])
        assert message0 == message1, name
        assert message0.startswith(f"{argument}: must be the same on every rank"), (name, message0)
        assert "rank 0:" in message0 and "rank 1:" in message0
    assert ranks[0]["value after agreement"] == ranks[1]["value after agreement"]
