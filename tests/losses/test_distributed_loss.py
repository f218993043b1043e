"""gather_distributed=True on 2 gloo processes equals single-process training on the concatenated batch.

Each rank holds its slice of a global batch, embeds it with the same linear encoder W, computes the loss with
``gather_distributed=True`` and backpropagates; W's gradient is then averaged over ranks as DDP does. Against the
single-process loss L on the concatenated batch (float64):

* the average of the ranks' losses is L, and with equal slices each rank's loss is the mean of L's per-anchor
  losses over its own anchors;
* rank r's gradient w.r.t. its embeddings is R * dL/dz_r (the sum of every rank's loss, which DDP's 1/R average
  turns into dL/dtheta);
* the DDP-averaged gradient of W is dL/dW.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from otalign import losses, targets

WORLD = 2
N_GLOBAL, D_IN, D = 8, 5, 4
LOSSES = ["InfoNCE", "NTXent", "GCAInfoNCE", "RINCE", "GCARINCE", "GCAUOT", "SupCon"]


def cases():
    out = []
    for name in LOSSES:
        kinds = {"NTXent": ["pair"], "SupCon": ["labels", "domain"]}.get(name, ["pair", "labels", "domain"])
        out += [(name, kind, (4, 4)) for kind in kinds]
    out += [(name, "pair", (3, 5)) for name in ("InfoNCE", "GCAInfoNCE", "GCAUOT")]
    out += [("GCAInfoNCE", "labels", (5, 3))]
    return out


def data():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(N_GLOBAL, D_IN, generator=g, dtype=torch.float64)
    x1 = x0 + 0.5 * torch.randn(N_GLOBAL, D_IN, generator=g, dtype=torch.float64)
    w = torch.randn(D_IN, D, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])
    domains = torch.tensor([0, 0, 1, 1, 0, 1, 1, 0])
    return x0, x1, w, labels, domains


def run_case(name, kind, rows, x0, x1, w, labels, domains, distributed):
    """Loss, per-anchor losses, gradients w.r.t. the embeddings and w.r.t. W for the given sample rows."""
    loss_fn = getattr(losses, name)(gather_distributed=distributed)
    per_anchor_fn = getattr(losses, name)(gather_distributed=distributed, reduction="none")
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
    return {"loss": loss.detach(), "per_anchor": per_anchor.detach(), "g0": g0, "g1": g1, "grad_w": grad_w}


def rank_rows(sizes, rank):
    start = sum(sizes[:rank])
    return torch.arange(start, start + sizes[rank])


def worker(rank, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x0, x1, w, labels, domains = data()
        results = []
        for name, kind, sizes in cases():
            out = run_case(name, kind, rank_rows(sizes, rank), x0, x1, w, labels, domains, distributed=True)
            dist.all_reduce(out["grad_w"])
            out["grad_w"] /= WORLD  # what DDP does with parameter gradients
            results.append(out)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gather_distributed_equals_single_process(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    x0, x1, w, labels, domains = data()
    everything = torch.arange(N_GLOBAL)
    for i, (name, kind, sizes) in enumerate(cases()):
        single = run_case(name, kind, everything, x0, x1, w, labels, domains, distributed=False)
        label = f"{name}/{kind}/{sizes}"
        mean_loss = sum(per_rank[r][i]["loss"] for r in range(WORLD)) / WORLD
        assert torch.allclose(mean_loss, single["loss"], atol=1e-6, rtol=0), label
        assert torch.allclose(per_rank[0][i]["grad_w"], single["grad_w"], atol=1e-6, rtol=0), label
        assert torch.allclose(per_rank[1][i]["grad_w"], single["grad_w"], atol=1e-6, rtol=0), label
        for r in range(WORLD):
            rows = rank_rows(sizes, r)
            anchors = torch.cat([rows, rows + N_GLOBAL])
            local = per_rank[r][i]
            assert torch.allclose(local["per_anchor"], single["per_anchor"][anchors], atol=1e-6, rtol=0), label
            if sizes[0] == sizes[1]:
                assert torch.allclose(local["loss"], single["per_anchor"][anchors].mean(), atol=1e-6, rtol=0), label
            assert torch.allclose(local["g0"], WORLD * single["g0"][rows], atol=1e-6, rtol=0), label
            assert torch.allclose(local["g1"], WORLD * single["g1"][rows], atol=1e-6, rtol=0), label
