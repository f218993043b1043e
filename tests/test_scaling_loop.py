"""The kernel domain's scaling loop (``otalign.softmin.scaling_loop``): the log-domain half-steps' iterates, its
one-pass iteration equal to the two products, and its one-node backward equal to autograd through a plain loop."""

import math

import pytest
import torch

from otalign import Problem
from otalign.halfstep import col_step, row_step
import otalign.softmin.scaling_loop as scaling_loop
from otalign.softmin.scaling_loop import ScaledKernel, Sweep, iterate, sweep_blocks


def _problem(seed, rho):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(7, 5, generator=g, dtype=torch.float64)
    a = torch.rand(7, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(5, generator=g, dtype=torch.float64) + 0.1
    return Problem(cost, a / a.sum(), b / b.sum(), eps=0.2, rho_a=rho, rho_b=rho, reference="uniform")


@pytest.mark.parametrize("rho", [math.inf, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_iterates_are_the_log_domain_half_steps(seed, rho):
    """u = exp(f / eps), v = exp(g / eps), K = exp(-C / eps) under the uniform reference: the scaling iterates are
    the half-steps' potentials, balanced and relaxed (exponents rho / (rho + eps))."""
    problem = _problem(seed, rho)
    eps = problem.eps
    f, g = torch.zeros(7, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    for _ in range(6):
        f, _ = row_step(problem, g)
        g, _ = col_step(problem, f)
    kernel = torch.exp(-problem.cost / eps)
    u, v, rows, cols = iterate(kernel, problem.a, problem.b, torch.ones(5, dtype=torch.float64), 6,
                               problem.lambda_a, problem.lambda_b)
    torch.testing.assert_close(u.log() * eps, f, rtol=0, atol=1e-12)
    torch.testing.assert_close(v.log() * eps, g, rtol=0, atol=1e-12)
    g_before = _previous_g(problem, 6)  # v_5: the last row step's input
    torch.testing.assert_close(rows, kernel @ torch.exp(g_before / eps), rtol=1e-12, atol=0)
    torch.testing.assert_close(cols, kernel.T @ u, rtol=1e-12, atol=0)


def _previous_g(problem, iterations):
    g = torch.zeros(problem.m, dtype=torch.float64)
    for _ in range(iterations - 1):
        f, _ = row_step(problem, g)
        g, _ = col_step(problem, f)
    return g


def _plain(logits, positives, iterations, lam_a, lam_b, exclude_diagonal):
    kernel = logits.exp()
    if exclude_diagonal:
        kernel = kernel * (1 - torch.eye(*kernel.shape, dtype=kernel.dtype))
    v = torch.ones(kernel.shape[1], dtype=kernel.dtype)
    for _ in range(iterations):
        u = (kernel @ v) ** -lam_a
        v = (kernel.T @ u) ** -lam_b
    return v, kernel @ v, logits.gather(1, positives)


@pytest.mark.parametrize("lams", [(1.0, 1.0), (0.7, 0.9)])
@pytest.mark.parametrize("exclude_diagonal", [True, False])
def test_one_node_backward_is_autograd_through_the_plain_loop(lams, exclude_diagonal):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    positives = torch.tensor([[3], [4], [5], [0], [1], [2]])
    weights = [torch.randn(6, generator=g, dtype=torch.float64) for _ in range(3)]

    def loss(fn):
        v, rows, pos = fn(logits, positives, 4, *lams, exclude_diagonal)
        return (weights[0] * v.log()).sum() + (weights[1] * rows.log()).sum() + (weights[2] * pos[:, 0]).sum()

    fused = loss(ScaledKernel.apply)
    plain = loss(_plain)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=0)
    (grad_fused,) = torch.autograd.grad(fused, logits)
    (grad_plain,) = torch.autograd.grad(plain, logits)
    torch.testing.assert_close(grad_fused, grad_plain, rtol=1e-10, atol=1e-12)
    if exclude_diagonal:
        assert bool((grad_fused.diagonal() == 0).all())


def test_gradcheck():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    positives = torch.tensor([[1], [2], [3], [4], [0]])
    assert torch.autograd.gradcheck(lambda x: ScaledKernel.apply(x, positives, 3, 0.8, 1.0, True), (logits,))


def _two_passes(kernel, a, b, v, lam_a, lam_b):
    rows = kernel @ v
    u = (torch.ones_like(rows) if a is None else a) / rows
    u = u ** lam_a
    cols = kernel.T @ u
    v_next = ((torch.ones_like(cols) if b is None else b) / cols) ** lam_b
    return rows, u, cols, v_next


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lams", [(1.0, 1.0), (0.7, 0.4)])
@pytest.mark.parametrize("masses", ["both", "none", "a"])
@pytest.mark.parametrize("shape, rows", [((10, 7), 3), ((33, 20), 4), ((64, 64), 16), ((9, 40), 1)])
def test_one_pass_iterations_equal_two_products(shape, rows, masses, lams, dtype, monkeypatch):
    """Blocks of ``rows`` rows (the last one shorter where they do not divide ``n``): every iterate of a chain of
    one-pass iterations equals the two products' up to the summation order of the column sums."""
    monkeypatch.setattr(scaling_loop, "SWEEP_MIN_ROWS", 1)
    monkeypatch.setattr(scaling_loop, "SWEEP_BLOCK_BYTES", rows * shape[1] * torch.finfo(dtype).bits // 8)
    gen = torch.Generator().manual_seed(shape[0] + rows)
    n, m = shape
    kernel = (torch.rand(n, m, generator=gen, dtype=torch.float64) + 0.05).to(dtype)
    a = None if masses == "none" else (torch.rand(n, generator=gen, dtype=torch.float64) + 0.1).to(dtype)
    b = None if masses != "both" else (torch.rand(m, generator=gen, dtype=torch.float64) + 0.1).to(dtype)
    sweep = Sweep(kernel, a, b, *lams)
    assert sweep.blocks is not None and len(sweep.blocks) == -(-n // rows)
    v = torch.ones(m, dtype=dtype)
    tol = dict(rtol=1e-12, atol=0) if dtype == torch.float64 else dict(rtol=1e-5, atol=0)
    for _ in range(5):
        got = sweep(v)
        for x, y in zip(got, _two_passes(kernel, a, b, v, *lams)):
            torch.testing.assert_close(x, y, **tol)
        v = got[3]
    u, v_last, rows_last, cols_last = iterate(kernel, a, b, torch.ones(m, dtype=dtype), 5, *lams)
    torch.testing.assert_close(v_last, v, rtol=0, atol=0)


def test_one_pass_blocks_where_they_pay():
    """A CPU matrix of at least two 1 MiB blocks of at least 128 rows: 1024 x 1024 float32 (4 of 256 rows), float64
    (8 of 128); not a matrix that fits the cache (512 x 512), not rows so long that a block has fewer than 128
    (4096 x 4096 float32), not a batch, not another device."""
    assert sweep_blocks(torch.empty(1024, 1024)) == [(i, i + 256) for i in range(0, 1024, 256)]
    assert sweep_blocks(torch.empty(1000, 1024)) == [(0, 256), (256, 512), (512, 768), (768, 1000)]
    assert len(sweep_blocks(torch.empty(1024, 1024, dtype=torch.float64))) == 8
    for kernel in (torch.empty(512, 512), torch.empty(4096, 4096), torch.empty(2, 1024, 1024),
                   torch.empty(1024, 1024, device="meta")):
        assert sweep_blocks(kernel) is None
