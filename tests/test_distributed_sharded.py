"""Sharded Sinkhorn (rows split across gloo processes) equals the single-process solve, in float64.

One spawn per world size (2 and 3 processes) runs every case; uneven row blocks throughout (one rank may hold a
single row). Each rank solves its rows with the ordinary solvers through ``ShardedGeometry`` and backpropagates
``plan.value / R + <W_r, P_r>`` (a replicated scalar divided by the number of ranks, plus a rank-local term whose
sum over ranks is ``<W, P>``): by the sum-over-ranks convention the gradient of its rows of ``x`` must be the rows
of the single-process gradient of ``value + <W, P>``, and the all-reduced gradient of ``y`` the whole of it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import otalign
from otalign import solvers
from otalign.costs import sqeuclidean
from otalign.distributed import ShardedGeometry, local_rows

N, M, B = 9, 7, 2
SPLITS = {2: [2, 7], 3: [4, 1, 4]}
TOL = 1e-6


@dataclass(frozen=True)
class Case:
    kind: str  # "dense" | "cloud" | "masked" | "batched"
    solver: str = "sinkhorn"
    options: dict = field(default_factory=dict)
    rho_a: float = math.inf
    rho_b: float = math.inf
    reference: str = "product"
    cost: str = "sqeuclidean"
    max_iter: int = 25
    tol: float = 0.0
    grad: str = "unroll"


CASES = [
    Case("dense"),
    Case("dense", tol=1e-9, max_iter=5000),
    Case("cloud"),
    Case("cloud", cost="euclidean", reference="uniform", tol=1e-9, max_iter=5000),
    Case("dense", "unbalanced", rho_a=0.5, rho_b=2.0, reference="uniform", tol=1e-9, max_iter=5000),
    Case("cloud", "unbalanced", rho_b=1.0, tol=1e-9, max_iter=5000),
    Case("cloud", options={"eps_scaling": 0.5}, tol=1e-9, max_iter=5000),
    Case("masked", max_iter=20),
    Case("batched", max_iter=20),
    Case("dense", "proximal", options={"inner_iter": 4}, max_iter=3),
    Case("dense", tol=1e-12, max_iter=5000, grad="implicit"),
    Case("cloud", "unbalanced", rho_a=1.0, rho_b=1.0, tol=1e-12, max_iter=5000, grad="implicit"),
]


def data():
    g = torch.Generator().manual_seed(0)
    dt = torch.float64
    x = 0.6 * torch.randn(N, 3, generator=g, dtype=dt)
    y = 0.6 * torch.randn(M, 3, generator=g, dtype=dt) + 0.2
    a = torch.rand(N, generator=g, dtype=dt) + 0.5
    b = torch.rand(M, generator=g, dtype=dt) + 0.5
    weights = torch.randn(B, N, M, generator=g, dtype=dt)
    mask = torch.zeros(N, M, dtype=torch.bool)
    mask[torch.arange(N), torch.arange(N) % M] = True
    return x, y, a / a.sum(), b / b.sum(), weights, mask


def run_case(case: Case, rows: slice, world: int):
    """Solve ``case`` on ``rows`` (sharded over the process group when ``world > 1``); results and gradients."""
    x_all, y_all, a_all, b_all, weights, mask_all = data()
    x = x_all[rows].clone().requires_grad_()
    y = y_all.clone().requires_grad_()
    a, b, mask = a_all[rows], b_all, None
    if case.kind == "batched":
        x_b = torch.stack([x, 0.5 * x])
        geometry = sqeuclidean(x_b, torch.stack([y, y.flip(0)]))
        a, b = a.expand(B, -1), b.expand(B, -1)
    elif case.kind == "cloud":
        geometry = otalign.PointCloud(x, y, cost=case.cost)
    else:
        geometry = sqeuclidean(x, y)
        mask = mask_all[rows] if case.kind == "masked" else None
    if world > 1:
        geometry = ShardedGeometry(geometry)
    problem = otalign.Problem(geometry, a, b, eps=0.1, rho_a=case.rho_a, rho_b=case.rho_b,
                              reference=case.reference, mask=mask)
    solver = solvers.get(case.solver, **case.options)
    plan = otalign.solve(problem, solver, max_iter=case.max_iter, tol=case.tol, grad=case.grad)
    local_weights = weights[:, rows] if case.kind == "batched" else weights[0, rows]
    loss = (plan.value / world + (plan.matrix * local_weights).sum((-1, -2))).sum()
    grad_x, grad_y = torch.autograd.grad(loss, (x, y))
    if world > 1:
        dist.all_reduce(grad_y)
    rows_marginal, cols_marginal = plan.marginals
    out = {
        "f": plan.f, "g": plan.g, "matrix": plan.matrix, "rows": rows_marginal, "cols": cols_marginal,
        "value": plan.value, "value_linear": plan.value_linear, "dual_value": plan.dual_value, "mass": plan.mass,
        "row_error": plan.marginal_error[0], "col_error": plan.marginal_error[1],
        "transport": plan.apply(x_all[rows].detach().expand(plan.f.shape + (3,)), axis=0),
        "grad_x": grad_x, "grad_y": grad_y,
    }
    out = {key: value.detach() for key, value in out.items()}
    out["iterations"] = plan.iterations
    return out


def worker(rank, world, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        start = sum(SPLITS[world][:rank])
        rows = slice(start, start + SPLITS[world][rank])
        results = [run_case(case, rows, world) for case in CASES]
        even = local_rows(10)
        torch.save({"results": results, "even": (even.start, even.stop)}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_sharded_solve_equals_single_process(world, tmp_path):
    mp.spawn(worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    even = {2: [(0, 5), (5, 10)], 3: [(0, 4), (4, 7), (7, 10)]}[world]
    assert [saved["even"] for saved in per_rank] == even
    for i, case in enumerate(CASES):
        single = run_case(case, slice(None), 1)
        for rank, saved in enumerate(per_rank):
            start = sum(SPLITS[world][:rank])
            rows = slice(start, start + SPLITS[world][rank])
            local = saved["results"][i]
            assert local["iterations"] == single["iterations"], (case, rank)
            for key, expected in single.items():
                if key in ("f", "rows"):
                    expected = expected[..., rows]
                elif key in ("matrix", "grad_x"):
                    expected = expected[..., rows, :]
                if key != "iterations":
                    assert local[key].shape == expected.shape, (case, rank, key)
                    assert torch.allclose(local[key], expected, atol=TOL, rtol=0), (case, rank, key)


# --------------------------------------------------------------------------- inputs agreed on before any collective
def broken_inputs(breakage: str, broken: bool):
    """This rank's (geometry-maker, problem kwargs) with ``breakage`` applied when ``broken``."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    kwargs = {"eps": 0.1}
    if broken and breakage == "no rows":
        x = x[:0]
    elif broken and breakage == "nan":
        x = x.clone()
        x[1, 2] = math.nan
    elif broken and breakage == "d":
        x, y = x[:, :2], y[:, :2]
    elif broken and breakage == "dtype":
        x, y = x.float(), y.float()
    elif broken and breakage == "m":
        y = y[:4]
    elif broken and breakage == "eps":
        kwargs["eps"] = 0.2
    elif broken and breakage == "a":
        kwargs["a"] = torch.full((4,), 0.125, dtype=torch.float64)
    elif broken and breakage == "negative a":
        kwargs["a"] = torch.full((4,), -0.125, dtype=torch.float64)
    return x, y, kwargs


#: breakage -> (argument named in the error, raised when the geometry is built (else by Problem))
BREAKAGES = {"no rows": ("rows", True), "nan": ("x: contains NaN", False), "d": ("features (d)", True),
             "dtype": ("dtype", True), "m": ("columns (m)", True), "eps": ("eps", False),
             "a": ("a given", False), "negative a": ("a: masses must be non-negative", False)}


def attempt(breakage: str, broken_rank: int, rank: int) -> str:
    x, y, kwargs = broken_inputs(breakage, rank == broken_rank)
    try:
        geometry = ShardedGeometry(otalign.PointCloud(x, y))
        otalign.solve(otalign.Problem(geometry, **kwargs), max_iter=5, tol=0)
    except otalign.distributed.DistributedInputError as error:
        return str(error)
    return "no error"


def agreement_worker(rank, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=20))  # a regression fails fast instead of hanging
    try:
        messages = {name: attempt(name, 1, rank) for name in BREAKAGES}
        draws = torch.Generator().manual_seed(7)  # the same random draws on both ranks
        names = list(BREAKAGES)
        random = []
        for _ in range(8):
            name = names[int(torch.randint(len(names), (1,), generator=draws))]
            broken_rank = int(torch.randint(2, (1,), generator=draws))
            random.append((name, broken_rank, attempt(name, broken_rank, rank)))
        healthy = attempt("none", -1, rank)
        x, y, _ = broken_inputs("none", False)
        refused = {}
        for name in solvers.available():  # every solver that does not declare "sharded" is refused on every rank
            if "sharded" in otalign.registry.solver_class(name).supports:
                continue
            options = {"rank": 2} if name == "lowrank" else {}
            try:
                otalign.solve(otalign.Problem(ShardedGeometry(otalign.PointCloud(x, y, "half_sqeuclidean")),
                                              eps=0.1), name, **options)
                refused[name] = "no error"
            except ValueError as error:
                refused[name] = str(error)
        torch.save({"messages": messages, "random": random, "healthy": healthy, "refused": refused},
                   os.path.join(out_dir, f"r{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_invalid_inputs_on_one_rank_raise_on_every_rank(tmp_path):
    mp.spawn(agreement_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    saved = [torch.load(tmp_path / f"r{rank}.pt") for rank in range(2)]
    for name, (argument, _) in BREAKAGES.items():
        for rank in range(2):
            message = saved[rank]["messages"][name]
            assert argument in message and "rank 1" in message, (name, rank, message)
            assert "rank 0:" not in message or name in ("d", "dtype", "m", "eps", "a"), (name, rank, message)
    for rank in range(2):
        for name, broken_rank, message in saved[rank]["random"]:
            assert BREAKAGES[name][0] in message and f"rank {broken_rank}" in message, (name, broken_rank, message)
        assert saved[rank]["healthy"] == "no error"
        assert {"pot", "geomloss", "lowrank"} <= set(saved[rank]["refused"])
        for name, message in saved[rank]["refused"].items():
            assert message.startswith(f"solver: {name!r} does not support rows split across processes"), message


# --------------------------------------------------------------------------- in-process checks (a one-rank group)
@pytest.fixture
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1,
                            timeout=timedelta(seconds=20))
    yield
    dist.destroy_process_group()


def test_sharded_geometry_needs_a_process_group():
    with pytest.raises(RuntimeError, match="init_process_group"):
        ShardedGeometry(torch.rand(3, 4))


def test_one_rank_sharded_solve_is_the_plain_solve(one_rank_group):
    x, y, a, b, _, _ = data()
    geometry = ShardedGeometry(otalign.PointCloud(x, y))
    assert (geometry.n, geometry.n_global, geometry.row_offset, geometry.shards) == (N, N, 0, 1)
    assert local_rows(N) == slice(0, N)
    sharded = otalign.solve(otalign.Problem(geometry, a, b, eps=0.1), tol=1e-9)
    plain = otalign.solve(otalign.Problem(otalign.PointCloud(x, y), a, b, eps=0.1), tol=1e-9)
    assert torch.allclose(sharded.f, plain.f, atol=1e-12) and torch.allclose(sharded.value, plain.value, atol=1e-12)


def test_local_errors_are_raised_through_the_agreement(one_rank_group):
    with pytest.raises(otalign.distributed.DistributedInputError, match="rank 0: local: this rank holds no rows"):
        ShardedGeometry(torch.rand(0, 4))
    with pytest.raises(otalign.distributed.DistributedInputError, match="rank 0: cost: contains NaN"):
        otalign.Problem(ShardedGeometry(torch.full((2, 2), math.nan)))
    with pytest.raises(ValueError, match="row_counts: rank 0 holds 2 rows, not 3"):
        ShardedGeometry.from_row_counts(otalign.DenseCost(torch.rand(2, 4)), [3])
