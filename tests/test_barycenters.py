"""Fixed-support entropic barycenters: parity with POT's ``ot.bregman.barycenter`` (log method, converged) and
``ot.barycenter_unbalanced`` (float64, several sizes, moderate and tiny eps), an independent plain-torch reference,
batching, gradients, float32 at small eps, and input errors naming the argument."""

from __future__ import annotations

import math

import pytest
import torch

import otalign

ot = pytest.importorskip("ot")
F64 = torch.float64


def _data(n: int, k: int, seed: int, batch=()):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=gen, dtype=F64)
    C = torch.cdist(x, x) ** 2
    H = torch.rand(batch + (k, n), generator=gen, dtype=F64) ** 3 + 1e-3
    w = torch.rand(k, generator=gen, dtype=F64) + 0.2
    return H / H.sum(-1, keepdim=True), C, w / w.sum()


def _reference(H: torch.Tensor, C: torch.Tensor, eps: float, w: torch.Tensor, iterations: int) -> torch.Tensor:
    """Plain iterative Bregman projections in the kernel domain (Benamou et al. 2015), written from the maths:
    u_k = a_k / K v_k, q = prod_k (K^T u_k)^w_k, v_k = q / K^T u_k."""
    K = torch.exp(-C / eps)
    v = torch.ones_like(H)
    q = None
    for _ in range(iterations):
        u = H / (v @ K.T)
        ktu = u @ K
        q = torch.exp((w[:, None] * torch.log(ktu)).sum(0))
        v = q / ktu
    return q


@pytest.mark.parametrize("n, k", [(5, 2), (30, 4), (100, 8)])
@pytest.mark.parametrize("eps", [0.2, 0.02])
def test_matches_pot(n, k, eps):
    H, C, w = _data(n, k, n + k)
    q = otalign.barycenter(H, C, eps=eps, weights=w, tol=1e-13, max_iter=20_000)
    expected = ot.bregman.barycenter(H.T, C, eps, w, method="sinkhorn_log", stopThr=1e-15, numItermax=20_000,
                                     warn=False)
    torch.testing.assert_close(q, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(q.sum(), torch.tensor(1.0, dtype=F64), rtol=0, atol=1e-10)


@pytest.mark.slow
def test_tiny_eps_stays_finite_and_matches_pot_log():
    H, C, w = _data(10, 2, 7)
    C = C / C.max()  # C / eps up to 1000: the kernel exp(-C / eps) underflows in both dtypes
    q, info = otalign.barycenter(H, C, eps=1e-3, weights=w, tol=1e-12, max_iter=20_000, return_log=True)
    assert info["converged"]
    expected = ot.bregman.barycenter(H.T, C, 1e-3, w, method="sinkhorn_log", stopThr=1e-15, numItermax=20_000,
                                     warn=False)
    torch.testing.assert_close(q, expected, rtol=0, atol=1e-8)
    q32 = otalign.barycenter(H.float(), C.float(), eps=1e-3, weights=w.float(), tol=1e-5, max_iter=5_000)
    assert bool(torch.isfinite(q32).all())
    torch.testing.assert_close(q32.double(), expected, rtol=0, atol=1e-3)


def test_matches_independent_reference_at_fixed_iterations():
    H, C, w = _data(40, 5, 3)
    q = otalign.barycenter(H, C, eps=0.05, weights=w, tol=0, max_iter=37)
    torch.testing.assert_close(q, _reference(H, C, 0.05, w, 37), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("rho", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("n, k", [(10, 2), (50, 5)])
def test_unbalanced_matches_pot(rho, n, k):
    H, C, w = _data(n, k, 11 + n)
    H = H * torch.linspace(0.5, 2.0, k, dtype=F64)[:, None]  # unequal masses
    q = otalign.barycenter(H, C, eps=0.05, weights=w, rho=rho, tol=1e-14, max_iter=20_000)
    expected = ot.barycenter_unbalanced(H.T, C, 0.05, rho, weights=w, stopThr=1e-15, numItermax=20_000)
    torch.testing.assert_close(q, expected, rtol=1e-9, atol=1e-12)


def test_batched_equals_loop():
    H, C, w = _data(15, 3, 5, batch=(4,))
    q = otalign.barycenter(H, C, eps=0.1, weights=w, tol=1e-12)
    assert q.shape == (4, 15)
    for i in range(4):
        torch.testing.assert_close(q[i], otalign.barycenter(H[i], C, eps=0.1, weights=w, tol=1e-12),
                                   rtol=0, atol=1e-11)
    costs = torch.stack([C * (1 + i / 4) for i in range(4)])
    q = otalign.barycenter(H, costs, eps=0.1, weights=w, tol=1e-12)
    torch.testing.assert_close(q[2], otalign.barycenter(H[2], costs[2], eps=0.1, weights=w, tol=1e-12),
                               rtol=0, atol=1e-11)


def test_gradients_through_iterations():
    H, C, w = _data(6, 2, 1)
    H.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda h: otalign.barycenter(h / h.sum(-1, keepdim=True), C, eps=0.3, weights=w, tol=0, max_iter=5), (H,))


def test_weights_are_normalised():
    H, C, w = _data(12, 3, 2)
    torch.testing.assert_close(otalign.barycenter(H, C, eps=0.1, weights=3 * w),
                               otalign.barycenter(H, C, eps=0.1, weights=w), rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "change, name",
    [
        (lambda H, C, w: dict(histograms=H[0]), "histograms"),
        (lambda H, C, w: dict(cost=C[:-1]), "cost"),
        (lambda H, C, w: dict(histograms=-H), "histograms"),
        (lambda H, C, w: dict(histograms=H.index_put((torch.tensor(0), torch.tensor(1)), torch.tensor(math.nan,
                                                                                                     dtype=F64))),
         "histograms"),
        (lambda H, C, w: dict(histograms=H * torch.tensor([[1.0], [2.0], [1.0]], dtype=F64)), "histograms"),
        (lambda H, C, w: dict(weights=-w), "weights"),
        (lambda H, C, w: dict(weights=w[:2]), "weights"),
        (lambda H, C, w: dict(eps=0.0), "eps"),
        (lambda H, C, w: dict(rho=0.0), "rho"),
        (lambda H, C, w: dict(cost=C.float()), "cost"),
    ],
)
def test_errors_name_the_argument(change, name):
    H, C, w = _data(8, 3, 0)
    kwargs = dict(histograms=H, cost=C, eps=0.1, weights=w)
    kwargs.update(change(H, C, w))
    with pytest.raises((ValueError, TypeError), match=name):
        otalign.barycenter(**kwargs)


@pytest.mark.parametrize("rho", [math.inf, 1.0])
@pytest.mark.parametrize("seed", range(6))
def test_exact_zeros_in_the_histograms_give_finite_gradients(seed, rho):
    """A histogram entry that is exactly 0 (a structural zero, as a Problem's masses) gets gradient 0, never NaN
    (the log-domain iterations took log 0 and 0 / 0 before; with rho < inf the NaN reached every entry), and the
    gradient along directions that keep the zeros is the finite-difference one."""
    H, C, w = _data(8, 3, seed)
    gen = torch.Generator().manual_seed(100 + seed)
    H = H * (torch.rand(H.shape, generator=gen, dtype=F64) > 0.3)
    H[:, 0] = H[:, 0] + 0.1  # every histogram keeps some mass
    H = H / H.sum(-1, keepdim=True)
    probe = torch.randn(8, generator=gen, dtype=F64)

    def value(h):
        return (otalign.barycenter(h, C, eps=0.05, weights=w, rho=rho, tol=0, max_iter=40) * probe).sum()

    leaf = H.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(value(leaf), leaf)
    assert bool(torch.isfinite(grad).all())
    assert bool((grad[H == 0] == 0).all())
    direction = torch.randn(H.shape, generator=gen, dtype=F64) * (H > 0)
    if math.isinf(rho):  # balanced: keep every histogram's total
        direction = direction - (H > 0) * direction.sum(-1, keepdim=True) / (H > 0).sum(-1, keepdim=True)
    step = 1e-6
    numeric = (value(H + step * direction) - value(H - step * direction)) / (2 * step)
    assert float((grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-5, abs=1e-8)
