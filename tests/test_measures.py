"""otalign.sinkhorn_divergence against an independent plain-torch reference: a dense log-domain Sinkhorn written
here, run to convergence for OT(a, b), OT(a, a) and OT(b, b), whose *primal* objectives (generalised KL, product
reference) give S = OT(a,b) - OT(a,a)/2 - OT(b,b)/2 + eps/2 (m(a) - m(b))^2. float64, random inputs, n != m."""

from __future__ import annotations

import math

import pytest
import torch

import otalign
from otalign import PointCloud, Problem, sinkhorn_divergence
from otalign.losses import SinkhornDivergence


def _points(n, m, seed, d=2, batch=None):
    gen = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    x = torch.rand(lead + (n, d), generator=gen, dtype=torch.float64)
    y = torch.rand(lead + (m, d), generator=gen, dtype=torch.float64) * 0.7 + 0.5
    a = torch.rand(lead + (n,), generator=gen, dtype=torch.float64) + 0.3
    b = torch.rand(lead + (m,), generator=gen, dtype=torch.float64) + 0.3
    return x, y, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


def _gkl(p, q):
    return (p * (p / q).log() - p + q).sum()


def _reference_ot(C, a, b, eps, rho, iterations=1000):
    """Primal value of min <C,P> + eps KL(P|a b^T) + rho KL(P1|a) + rho KL(P^T 1|b), and the plan."""
    lam = 1.0 if math.isinf(rho) else rho / (rho + eps)
    f, g = torch.zeros_like(a), torch.zeros_like(b)
    for _ in range(iterations):
        f = -lam * eps * torch.logsumexp(b.log() + (g - C) / eps, dim=1)
        g = -lam * eps * torch.logsumexp(a.log()[:, None] + (f[:, None] - C) / eps, dim=0)
    P = a[:, None] * b[None, :] * torch.exp((f[:, None] + g[None, :] - C) / eps)
    value = (P * C).sum() + eps * _gkl(P, a[:, None] * b[None, :])
    if not math.isinf(rho):
        value = value + rho * _gkl(P.sum(1), a) + rho * _gkl(P.sum(0), b)
    return value, P


def _sq(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / 2


def _reference(x, y, a, b, eps, rho, debias=True):
    ab, P = _reference_ot(_sq(x, y), a, b, eps, rho)
    if not debias:
        ma, mb = a.sum(), b.sum()  # geomloss's raw value: OT + eps (m(a) + m(b)) / 2 - eps m(a) m(b)
        extra = 0.0 if math.isinf(rho) else eps * (ma + mb) / 2 - eps * ma * mb
        return ab + extra, P
    aa, _ = _reference_ot(_sq(x, x), a, a, eps, rho)
    bb, _ = _reference_ot(_sq(y, y), b, b, eps, rho)
    return ab - aa / 2 - bb / 2 + eps / 2 * (a.sum() - b.sum()) ** 2, P


@pytest.mark.parametrize("rho", [math.inf, 0.5])
@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("n, m", [(12, 12), (15, 9)])
def test_converged_divergence_matches_plain_torch_reference(rho, debias, n, m):
    x, y, a, b = _points(n, m, seed=n + m)
    if not math.isinf(rho):
        b = 1.3 * b
    eps = 0.1
    expected, P = _reference(x, y, a, b, eps, rho, debias)
    xg = x.clone().requires_grad_()
    value = sinkhorn_divergence(xg, y, a, b, eps=eps, rho=rho, debias=debias, method="sinkhorn", tol=1e-12,
                                max_iter=3000)
    torch.testing.assert_close(value, expected, atol=1e-8, rtol=0)
    # gradient w.r.t. the positions of x through OT(a, b): <grad_x C, P> (envelope theorem), minus the self-term's
    (grad,) = torch.autograd.grad(value, xg)
    xr = x.clone().requires_grad_()
    cross = (_sq(xr, y) * P).sum()
    expected_grad = torch.autograd.grad(cross, xr)[0]
    if debias:
        _, P_aa = _reference_ot(_sq(x, x), a, a, eps, rho)
        xs = x.clone().requires_grad_()
        self_term = (_sq(xs, x) * P_aa).sum()  # d/dx OT(a,a)/2: x on both sides of C(x, x), halved
        expected_grad = expected_grad - torch.autograd.grad(self_term, xs)[0]
    torch.testing.assert_close(grad, expected_grad, atol=1e-7, rtol=0)


@pytest.mark.parametrize("rho", [math.inf, 0.4])
def test_weight_gradient_matches_finite_differences(rho):
    x, y, a, b = _points(10, 8, seed=5)
    gen = torch.Generator().manual_seed(1)
    direction = torch.randn(10, generator=gen, dtype=torch.float64)
    if math.isinf(rho):
        direction = direction - direction.mean()  # balanced: the masses must keep their total
    else:
        b = 1.2 * b

    def value(weights):
        return sinkhorn_divergence(x, y, weights, b, eps=0.1, rho=rho, method="sinkhorn", tol=1e-13,
                                   max_iter=5000)

    ag = a.clone().requires_grad_()
    (grad,) = torch.autograd.grad(value(ag), ag)
    step = 1e-5
    finite = (value(a + step * direction) - value(a - step * direction)) / (2 * step)
    torch.testing.assert_close((grad * direction).sum(), finite, atol=1e-7, rtol=0)


def test_annealing_with_slow_schedule_approaches_the_converged_value():
    x, y, a, b = _points(20, 16, seed=2)
    eps = 0.05
    expected, _ = _reference(x, y, a, b, eps, math.inf)
    coarse = sinkhorn_divergence(x, y, a, b, eps=eps, eps_scaling=0.25)
    fine = sinkhorn_divergence(x, y, a, b, eps=eps, eps_scaling=0.97)
    assert abs(fine - expected) < 1e-3
    assert abs(fine - expected) < abs(coarse - expected)


def test_point_cloud_and_problem_inputs_agree_with_tensors():
    x, y, a, b = _points(10, 14, seed=4)
    value = sinkhorn_divergence(x, y, a, b, eps=0.2, rho=2.0, cost="sqeuclidean", eps_start=9.0)
    from_cloud = sinkhorn_divergence(PointCloud(x, y, cost="sqeuclidean"), a=a, b=b, eps=0.2, rho=2.0, eps_start=9.0)
    problem = Problem(PointCloud(x, y, cost="sqeuclidean"), a, b, eps=0.2, rho_a=2.0, rho_b=2.0)
    from_problem = sinkhorn_divergence(problem, eps_start=9.0)
    torch.testing.assert_close(from_cloud, value, atol=1e-14, rtol=0)
    torch.testing.assert_close(from_problem, value, atol=1e-14, rtol=0)


@pytest.mark.parametrize("method", ["annealing", "sinkhorn"])
def test_batched_equals_one_by_one(method):
    x, y, a, b = _points(9, 7, seed=8, batch=3)
    values = sinkhorn_divergence(x, y, a, b, eps=0.1, method=method)
    for k in range(3):
        one = sinkhorn_divergence(x[k], y[k], a[k], b[k], eps=0.1, method=method, eps_start=None)
        assert values.shape == (3,)
        # the schedule starts at the bounding diameter of all batches: compare with the same start
        start = otalign.symmetric_sinkhorn.bounding_diameter(x, y) ** 2
        one = sinkhorn_divergence(x[k], y[k], a[k], b[k], eps=0.1, method=method, eps_start=start)
        torch.testing.assert_close(values[k], one, atol=1e-12, rtol=0)


def test_divergence_of_a_measure_with_itself_is_zero_and_positive_otherwise():
    x, y, a, b = _points(16, 16, seed=11)
    torch.testing.assert_close(sinkhorn_divergence(x, x, a, a, eps=0.1), torch.zeros((), dtype=torch.float64),
                               atol=1e-12, rtol=0)
    assert sinkhorn_divergence(x, y, a, b, eps=0.1) > 0


def test_unroll_gradient_approaches_the_envelope_gradient():
    x, y, a, b = _points(14, 10, seed=12)
    grads = []
    for grad in ("envelope", "unroll"):
        xg = x.clone().requires_grad_()
        value = sinkhorn_divergence(xg, y, a, b, eps=0.1, method="sinkhorn", tol=1e-12, grad=grad)
        grads.append(torch.autograd.grad(value, xg)[0])
    torch.testing.assert_close(grads[1], grads[0], atol=1e-8, rtol=0)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reach", [None, 0.5])
def test_never_nan_at_tiny_blur_in_float32(p, reach):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(300, 3, generator=gen) * 4).requires_grad_()
    y = torch.rand(200, 3, generator=gen) * 4 + 1
    a = torch.full((300,), 1 / 300, requires_grad=True)
    points = torch.cat([x.detach(), y])
    diameter = float((points.amax(0) - points.amin(0)).norm())
    loss = SinkhornDivergence(p=p, blur=1e-3 * diameter, reach=reach, scaling=0.5)
    value = loss(a, x, torch.full((200,), 1 / 200), y)
    grads = torch.autograd.grad(value, [x, a])
    assert torch.isfinite(value)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("kwargs, match", [
    ({"eps": None}, "eps"), ({"method": "exact"}, "method"), ({"grad": "implicit"}, "grad"),
    ({"eps_scaling": 1.5}, "eps_scaling"), ({"cost": "negative_cosine"}, "eps_start"),
])
def test_bad_arguments_are_named(kwargs, match):
    x, y, a, b = _points(5, 4, seed=0)
    options = {"eps": 0.1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        sinkhorn_divergence(x, y, a, b, **options)


def test_problem_without_points_is_refused():
    x, y, a, b = _points(5, 4, seed=0)
    with pytest.raises(TypeError, match="has no points"):
        sinkhorn_divergence(Problem(torch.cdist(x, y), a, b, eps=0.1))


def test_balanced_divergence_needs_equal_masses():
    x, y, a, b = _points(5, 4, seed=0)
    with pytest.raises(ValueError, match="a, b"):
        sinkhorn_divergence(x, y, a, 2 * b, eps=0.1)
    sinkhorn_divergence(x, y, a, 2 * b, eps=0.1, rho=1.0)


def test_bad_masses_are_named():
    x, y, a, b = _points(5, 4, seed=0)
    with pytest.raises(ValueError, match="b: expected masses of shape"):
        sinkhorn_divergence(x, y, a, b[:3], eps=0.1)
    with pytest.raises(ValueError, match="a: masses must be non-negative"):
        sinkhorn_divergence(x, y, -a, b, eps=0.1, rho=1.0)
