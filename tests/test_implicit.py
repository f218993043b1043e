"""Differentiation modes: ``grad="implicit"`` against ``grad="unroll"`` run to convergence and against finite
differences; ``gradcheck`` for unroll (fixed iterations) and implicit; ``"envelope"`` (Danskin) and ``"detach"``.

All in float64 on problems of a few points. The loss is ``<W, P>`` for a fixed random ``W`` (invariant to the
balanced gauge ``(f + c, g - c)``), plus ``<V, f>`` for relaxed problems, whose potentials are unique.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from otalign import PointCloud, Problem, solve

CASES = {
    "balanced-product": ((math.inf, math.inf), "product"),
    "balanced-uniform": ((math.inf, math.inf), "uniform"),
    "unbalanced-product": ((1.0, 0.5), "product"),
    "unbalanced-uniform": ((1.0, 0.5), "uniform"),
    "semirelaxed": ((math.inf, 0.3), "product"),
    "free-columns": ((math.inf, 0.0), "product"),
}
EPS = 0.2
TIGHT = dict(tol=1e-13, max_iter=100_000)


def weights(n: int, m: int, seed: int = 7):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, m, generator=gen, dtype=torch.float64), torch.randn(n, generator=gen, dtype=torch.float64)


def loss_fn(plan, W, V, balanced):
    loss = (W * plan.matrix).sum()
    return loss if balanced else loss + (V * plan.f).sum()


def gradients(data, case, grad):
    rho, reference = CASES[case]
    C, a, b = (t.clone().requires_grad_() for t in (data.C, data.a, data.b))
    plan = solve(Problem(C, a, b, eps=EPS, rho_a=rho[0], rho_b=rho[1], reference=reference), grad=grad, **TIGHT)
    W, V = weights(*data.C.shape)
    loss = loss_fn(plan, W, V, math.isinf(rho[0]) and math.isinf(rho[1]))
    return torch.autograd.grad(loss, (C, a, b))


def converged_loss(data, case, C, a, b):
    rho, reference = CASES[case]
    plan = solve(Problem(C, a, b, eps=EPS, rho_a=rho[0], rho_b=rho[1], reference=reference), grad="detach", **TIGHT)
    W, V = weights(*C.shape)
    return loss_fn(plan, W, V, math.isinf(rho[0]) and math.isinf(rho[1])).item()


def tangent(ga, gb):
    """Project mass gradients onto ``{(da, db): sum da = sum db}``, the directions that keep a balanced problem
    feasible (remove the component along ``(1_n, -1_m)``)."""
    n, m = ga.numel(), gb.numel()
    c = (ga.sum() - gb.sum()) / (n + m)
    return ga - c, gb + c


@pytest.mark.parametrize("case", list(CASES))
def test_implicit_equals_unroll_at_convergence(data, case):
    implicit = gradients(data, case, "implicit")
    unroll = gradients(data, case, "unroll")
    torch.testing.assert_close(implicit[0], unroll[0], rtol=1e-8, atol=1e-10)
    if case.startswith("balanced"):
        implicit_ab, unroll_ab = tangent(*implicit[1:]), tangent(*unroll[1:])
    else:
        implicit_ab, unroll_ab = implicit[1:], unroll[1:]
    for gi, gu in zip(implicit_ab, unroll_ab):
        torch.testing.assert_close(gi, gu, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_implicit_matches_finite_differences(data, case):
    """Directional derivatives along random directions (zero-sum for masses of a balanced problem)."""
    g_C, g_a, g_b = gradients(data, case, "implicit")
    gen = torch.Generator().manual_seed(11)
    dC = torch.randn(data.C.shape, generator=gen, dtype=torch.float64)
    da = torch.randn(data.a.shape, generator=gen, dtype=torch.float64)
    db = torch.randn(data.b.shape, generator=gen, dtype=torch.float64)
    if case.startswith("balanced"):
        da, db = da - da.mean(), db - db.mean()
    h = 1e-5
    for direction, analytic in (
        ((dC, 0, 0), (g_C * dC).sum()),
        ((0, da, 0), (g_a * da).sum()),
        ((0, 0, db), (g_b * db).sum()),
    ):
        plus = converged_loss(data, case, *(t + h * d for t, d in zip((data.C, data.a, data.b), direction)))
        minus = converged_loss(data, case, *(t - h * d for t, d in zip((data.C, data.a, data.b), direction)))
        assert abs((plus - minus) / (2 * h) - analytic.item()) <= 1e-6 * max(1.0, abs(analytic.item()))


@pytest.mark.parametrize("rho", [(math.inf, math.inf), (1.0, 1.0)])
def test_pointcloud_x_gradient_implicit_unroll_and_fd(data, rho):
    def run(x, grad):
        problem = Problem(PointCloud(x, data.y, "sqeuclidean"), data.a, data.b, eps=0.5, rho_a=rho[0], rho_b=rho[1])
        plan = solve(problem, grad=grad, **TIGHT)
        W, _ = weights(*data.C.shape)
        return (W * plan.matrix).sum()

    grads = {}
    for mode in ("implicit", "unroll"):
        x = data.x.clone().requires_grad_()
        (grads[mode],) = torch.autograd.grad(run(x, mode), x)
    torch.testing.assert_close(grads["implicit"], grads["unroll"], rtol=1e-8, atol=1e-10)
    direction = torch.randn(data.x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    h = 1e-5
    fd = (run(data.x + h * direction, "detach") - run(data.x - h * direction, "detach")) / (2 * h)
    torch.testing.assert_close(fd, (grads["implicit"] * direction).sum(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("rho", [(math.inf, math.inf), (1.0, 0.5)])
def test_batched_implicit_equals_unroll(batch_data, rho):
    d = batch_data
    W = torch.randn(d.C.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = {}
    for mode in ("implicit", "unroll"):
        C = d.C.clone().requires_grad_()
        plan = solve(Problem(C, d.a, d.b, eps=EPS, rho_a=rho[0], rho_b=rho[1]), grad=mode, **TIGHT)
        (grads[mode],) = torch.autograd.grad((W * plan.matrix).sum(), C)
    torch.testing.assert_close(grads["implicit"], grads["unroll"], rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- gradcheck

def mass_inputs(make):
    """A 4 x 3 problem; masses are parametrised by logits through softmax so that balanced problems stay balanced
    under gradcheck's perturbations."""
    d = make(4, 3, seed=9)
    alpha, beta = d.a.log().clone().requires_grad_(), d.b.log().clone().requires_grad_()
    return d.C.clone().requires_grad_(), alpha, beta


def test_gradcheck_unroll_fixed_iterations(make):
    C, alpha, beta = mass_inputs(make)

    def fn(C, alpha, beta):
        problem = Problem(C, alpha.softmax(0), beta.softmax(0), eps=0.3)
        return solve(problem, tol=0, max_iter=8).matrix

    assert gradcheck(fn, (C, alpha, beta))


@pytest.mark.parametrize("case", ["balanced-product", "unbalanced-uniform", "unbalanced-product", "semirelaxed"])
def test_gradcheck_implicit(make, case):
    rho, reference = CASES[case]
    C, alpha, beta = mass_inputs(make)

    def fn(C, alpha, beta):
        problem = Problem(C, alpha.softmax(0), beta.softmax(0), eps=0.3, rho_a=rho[0], rho_b=rho[1],
                          reference=reference)
        plan = solve(problem, grad="implicit", **TIGHT)
        return plan.matrix if math.isinf(rho[1]) and math.isinf(rho[0]) else (plan.matrix, plan.f, plan.g)

    assert gradcheck(fn, (C, alpha, beta))


def test_gradcheck_implicit_pointcloud(make):
    d = make(4, 3, seed=10)
    x, y = d.x.clone().requires_grad_(), d.y.clone().requires_grad_()

    def fn(x, y):
        return solve(Problem(PointCloud(x, y), eps=0.5, rho_a=1.0, rho_b=1.0), grad="implicit", **TIGHT).matrix

    assert gradcheck(fn, (x, y))


# --------------------------------------------------------------------------- envelope and detach

@pytest.mark.parametrize("rho", [(math.inf, math.inf), (1.0, 0.5)])
def test_envelope_gradient_is_the_plan(data, rho):
    """Danskin: d(optimal value)/dC = P*. Checked against the plan and against finite differences of the
    converged value."""
    C = data.C.clone().requires_grad_()
    problem = Problem(C, data.a, data.b, eps=EPS, rho_a=rho[0], rho_b=rho[1])
    plan = solve(problem, grad="envelope", **TIGHT)
    (g_C,) = torch.autograd.grad(plan.value, C)
    torch.testing.assert_close(g_C, plan.matrix.detach(), rtol=1e-10, atol=1e-13)

    def value(cost):
        return solve(Problem(cost, data.a, data.b, eps=EPS, rho_a=rho[0], rho_b=rho[1]), grad="detach", **TIGHT).value

    direction = torch.randn(C.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = 1e-5
    fd = (value(data.C + h * direction) - value(data.C - h * direction)) / (2 * h)
    torch.testing.assert_close(fd, (g_C * direction).sum(), rtol=1e-7, atol=1e-10)


def test_detach_gives_no_gradient(data):
    C = data.C.clone().requires_grad_()
    plan = solve(Problem(C, data.a, data.b, eps=EPS), grad="detach", tol=1e-8)
    for t in (plan.f, plan.g, plan.matrix, plan.value):
        assert not t.requires_grad
    assert torch.isfinite(plan.matrix).all()


def test_implicit_is_rejected_for_the_proximal_solver(data):
    with pytest.raises(ValueError, match="grad"):
        solve(Problem(data.C, eps=EPS), "proximal", grad="implicit", max_iter=3)
