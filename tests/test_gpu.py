"""CUDA checks: the same problems on the GPU give the CPU's answers. Skipped cleanly without a GPU (CI has none)."""

from __future__ import annotations

import math

import pytest
import torch

import otalign
from otalign.losses import GCAInfoNCE, GCAUOT, InfoNCE
from otalign.solvers import Sinkhorn

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def random_problem(device, dtype=torch.float64, rho=(math.inf, math.inf)):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 16, generator=gen, dtype=dtype), torch.randn(200, 16, generator=gen, dtype=dtype)
    cost = torch.cdist(x, y) ** 2
    cost = cost / cost.max()
    return otalign.Problem(cost.to(device), eps=0.05, rho_a=rho[0], rho_b=rho[1])


@pytest.mark.parametrize("solver", ["sinkhorn", "unbalanced"])
@pytest.mark.parametrize("rho", [(math.inf, math.inf), (0.5, 1.0)])
def test_cuda_solve_equals_cpu(solver, rho):
    cpu = otalign.solve(random_problem("cpu", rho=rho), solver, tol=1e-10, max_iter=5000)
    gpu = otalign.solve(random_problem("cuda", rho=rho), solver, tol=1e-10, max_iter=5000)
    torch.testing.assert_close(gpu.matrix.cpu(), cpu.matrix, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kernel", ["blocked", "compiled", "auto", "absorbed"])
def test_cuda_kernels_agree(kernel):
    problem = random_problem("cuda", torch.float32)
    reference = otalign.solve(problem, Sinkhorn(kernel="blocked"), max_iter=50, tol=0)
    plan = otalign.solve(problem, Sinkhorn(kernel=kernel), max_iter=50, tol=0)
    torch.testing.assert_close(plan.f, reference.f, rtol=1e-4, atol=1e-5)


def test_cuda_blocks_are_large():
    from otalign.geometry import GPU_BLOCK_ELEMENTS

    cost = torch.zeros(8192, 4096, device="cuda")
    assert otalign.DenseCost(cost).block_rows() == GPU_BLOCK_ELEMENTS // 4096
    assert otalign.DenseCost(cost.cpu()).block_rows() < GPU_BLOCK_ELEMENTS // 4096


def test_cuda_point_cloud_equals_cpu():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(500, 8, generator=gen), torch.randn(400, 8, generator=gen)
    plans = [
        otalign.solve(otalign.Problem(otalign.PointCloud(x.to(d), y.to(d)), eps=1.0), tol=1e-5)
        for d in ("cpu", "cuda")
    ]
    torch.testing.assert_close(plans[1].f.cpu(), plans[0].f, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("loss", [InfoNCE(), GCAInfoNCE(), GCAUOT()], ids=lambda l: type(l).__name__)
def test_cuda_losses_equal_cpu_and_survive_autocast(loss):
    gen = torch.Generator().manual_seed(2)
    z0, z1 = torch.randn(64, 32, generator=gen), torch.randn(64, 32, generator=gen)
    cpu = loss(z0, z1)
    gpu = loss(z0.cuda(), z1.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        mixed = loss(z0.cuda().bfloat16(), z1.cuda().bfloat16())
    assert torch.isfinite(mixed) and mixed.dtype == torch.float32
