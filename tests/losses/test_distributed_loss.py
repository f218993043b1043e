"""gather_distributed=True on 2 and 3 gloo processes equals single-process training on the concatenated batch.

Each rank holds its slice of a global batch, embeds it with the same linear encoder W, computes the loss with
``gather_distributed=True`` and backpropagates; W's gradient is then averaged over ranks as DDP does. Against the
single-process loss L on the concatenated batch (float64):

* the average of the ranks' losses is L, and with equal slices each rank's loss is the mean of L's per-anchor
  losses over its own anchors;
* rank r's gradient w.r.t. its embeddings is R * dL/dz_r (the sum of every rank's loss, which DDP's 1/R average
  turns into dL/dtheta);
* the DDP-averaged gradient of W is dL/dW;
* no rank solves more than its own rows: the plan of an alignment loss is ``(V N_r, V N_global)`` on rank r.

A second spawn breaks one rank's inputs (no rows, NaN, labels on one rank only, another d, number of views or
dtype): every rank must raise the same error naming the argument and the rank, with no hang (the process group has
a short timeout, so a regression fails fast).
"""

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from otalign import losses, targets

N_GLOBAL, D_IN, D = 8, 5, 4
LOSSES = ["InfoNCE", "NTXent", "GCAInfoNCE", "RINCE", "GCARINCE", "GCAUOT", "SupCon"]
#: Even and uneven local batch sizes (one rank may hold a single sample) per world size.
SIZES = {2: [(4, 4), (3, 5), (1, 7)], 3: [(3, 3, 2), (1, 5, 2)]}


def cases(world):
    even, *uneven = SIZES[world]
    out = []
    for name in LOSSES:
        kinds = {"NTXent": ["pair"], "SupCon": ["labels", "domain"]}.get(name, ["pair", "labels", "domain"])
        out += [(name, kind, even) for kind in kinds]
    for sizes in uneven:
        out += [(name, "pair", sizes) for name in ("InfoNCE", "NTXent", "GCAInfoNCE", "GCAUOT")]
        out += [("GCAInfoNCE", "labels", sizes), ("GCARINCE", "domain", sizes), ("SupCon", "labels", sizes)]
    out += [("GCAInfoNCE", "pair", even, "authors"), ("GCARINCE", "labels", uneven[0], "authors")]
    return out


def data():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(N_GLOBAL, D_IN, generator=g, dtype=torch.float64)
    x1 = x0 + 0.5 * torch.randn(N_GLOBAL, D_IN, generator=g, dtype=torch.float64)
    w = torch.randn(D_IN, D, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])
    domains = torch.tensor([0, 0, 1, 1, 0, 1, 1, 0])
    return x0, x1, w, labels, domains


def run_case(name, kind, rows, x0, x1, w, labels, domains, distributed, compat=None):
    """Loss, per-anchor losses, gradients w.r.t. the embeddings and w.r.t. W for the given sample rows."""
    options = {} if compat is None else {"compat": compat}
    loss_fn = getattr(losses, name)(gather_distributed=distributed, **options)
    per_anchor_fn = getattr(losses, name)(gather_distributed=distributed, reduction="none", **options)
    z0 = (x0[rows] @ w).requires_grad_()
    z1 = (x1[rows] @ w).requires_grad_()
    kwargs = {}
    if kind == "labels":
        kwargs["labels"] = labels[rows]
    elif kind == "domain":  # a user target is the global matrix, also when gathering
        kwargs["target"] = targets.domain_prior(domains, alpha=0.5, beta=0.1, dtype=torch.float64)
    loss = loss_fn(z0, z1, **kwargs)
    g0, g1 = torch.autograd.grad(loss, (z0, z1))
    grad_w = x0[rows].T @ g0 + x1[rows].T @ g1
    per_anchor = per_anchor_fn(z0.detach(), z1.detach(), **kwargs)
    out = {"loss": loss.detach(), "per_anchor": per_anchor.detach(), "g0": g0, "g1": g1, "grad_w": grad_w}
    if hasattr(loss_fn, "align"):
        out["plan_shape"] = tuple(loss_fn.align(z0.detach(), z1.detach(), **kwargs).plan.f.shape)
    return out


def rank_rows(sizes, rank):
    start = sum(sizes[:rank])
    return torch.arange(start, start + sizes[rank])


def worker(rank, world, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        x0, x1, w, labels, domains = data()
        results = []
        for name, kind, sizes, *compat in cases(world):
            rows = rank_rows(sizes, rank)
            out = run_case(name, kind, rows, x0, x1, w, labels, domains, True, *compat)
            dist.all_reduce(out["grad_w"])
            out["grad_w"] /= world  # what DDP does with parameter gradients
            results.append(out)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_gather_distributed_equals_single_process(world, tmp_path):
    mp.spawn(worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    x0, x1, w, labels, domains = data()
    everything = torch.arange(N_GLOBAL)
    for i, (name, kind, sizes, *compat) in enumerate(cases(world)):
        single = run_case(name, kind, everything, x0, x1, w, labels, domains, False, *compat)
        label = f"{name}/{kind}/{sizes}/{compat}"
        mean_loss = sum(per_rank[r][i]["loss"] for r in range(world)) / world
        assert torch.allclose(mean_loss, single["loss"], atol=1e-6, rtol=0), label
        for r in range(world):
            rows = rank_rows(sizes, r)
            anchors = torch.cat([rows, rows + N_GLOBAL])
            local = per_rank[r][i]
            assert torch.allclose(local["grad_w"], single["grad_w"], atol=1e-6, rtol=0), label
            assert torch.allclose(local["per_anchor"], single["per_anchor"][anchors], atol=1e-6, rtol=0), label
            if len(set(sizes)) == 1:
                assert torch.allclose(local["loss"], single["per_anchor"][anchors].mean(), atol=1e-6, rtol=0), label
            assert torch.allclose(local["g0"], world * single["g0"][rows], atol=1e-6, rtol=0), label
            assert torch.allclose(local["g1"], world * single["g1"][rows], atol=1e-6, rtol=0), label
            if "plan_shape" in single:  # only this rank's anchors: (V N_r,) row potentials
                assert local["plan_shape"] == (2 * sizes[r],), label


# --------------------------------------------------------------------------- invalid inputs on one rank
def broken_call(breakage, broken):
    """Arguments of a GCA-InfoNCE call on one rank, broken as named when ``broken``."""
    g = torch.Generator().manual_seed(3)
    z0, z1 = torch.randn(3, D, generator=g, dtype=torch.float64), torch.randn(3, D, generator=g, dtype=torch.float64)
    views, kwargs = [z0, z1], {}
    if breakage in ("labels", "labels on one rank"):
        kwargs["labels"] = torch.tensor([0, 1, 0])
    if not broken:
        return views, kwargs
    if breakage == "no rows":
        views = [z[:0] for z in views]
    elif breakage == "nan":
        views[1] = views[1].clone()
        views[1][2, 0] = float("nan")
    elif breakage == "labels on one rank":
        kwargs = {}
    elif breakage == "d":
        views = [z[:, :3] for z in views]
    elif breakage == "views":
        views = views + [views[0] + 1]
    elif breakage == "dtype":
        views = [z.float() for z in views]
    elif breakage == "labels":
        kwargs["labels"] = torch.tensor([0, 1])
    return views, kwargs


#: breakage -> what the error must name
BREAKAGES = {"no rows": "z0", "nan": "z1: contains NaN", "labels on one rank": "labels", "d": "d",
             "views": "views", "dtype": "dtype", "labels": "labels: expected shape"}


def attempt(breakage, broken_rank, rank):
    views, kwargs = broken_call(breakage, rank == broken_rank)
    views = [z.requires_grad_() for z in views]
    loss_fn = losses.GCAInfoNCE(gather_distributed=True)
    try:
        loss_fn(*views, **kwargs).backward()
    except ValueError as error:
        return str(error)
    return "no error"


def breakage_worker(rank, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=20))
    try:
        messages = {name: attempt(name, 1, rank) for name in BREAKAGES}
        draws = torch.Generator().manual_seed(11)  # the same random breakages on both ranks
        names, random = list(BREAKAGES), []
        for _ in range(8):
            name = names[int(torch.randint(len(names), (1,), generator=draws))]
            broken_rank = int(torch.randint(2, (1,), generator=draws))
            random.append((name, broken_rank, attempt(name, broken_rank, rank)))
        healthy = attempt("pair", -1, rank)
        torch.save({"messages": messages, "random": random, "healthy": healthy}, os.path.join(out_dir, f"r{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_invalid_inputs_on_one_rank_raise_on_every_rank(tmp_path):
    mp.spawn(breakage_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    saved = [torch.load(tmp_path / f"r{rank}.pt") for rank in range(2)]
    for rank in range(2):
        for name, argument in BREAKAGES.items():
            message = saved[rank]["messages"][name]
            assert argument in message and "rank 1" in message, (name, rank, message)
        for name, broken_rank, message in saved[rank]["random"]:
            assert BREAKAGES[name] in message and f"rank {broken_rank}" in message, (name, broken_rank, message)
        assert saved[rank]["healthy"] == "no error"
