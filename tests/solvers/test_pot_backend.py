"""The "pot" backend: POT's solvers behind the otalign interface give the same plans and potentials as the native
solvers (float64), exact plans from ``ot.emd``, batching, gradients through POT, and its input checks."""

from __future__ import annotations

import math

import pytest
import torch

from otalign import Problem, solve

pytest.importorskip("ot")


@pytest.mark.parametrize("method", ["sinkhorn_log", "sinkhorn"])
@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_balanced_matches_native(data, method, reference):
    problem = Problem(data.C, data.a, data.b, eps=0.1, reference=reference)
    pot = solve(problem, "pot", method=method, tol=1e-14, max_iter=20_000)
    native = solve(problem, tol=1e-13, max_iter=20_000)
    torch.testing.assert_close(pot.matrix, native.matrix, rtol=0, atol=1e-12)
    c = (pot.f - native.f).mean()  # balanced potentials: compare up to the gauge (f + c, g - c)
    torch.testing.assert_close(pot.f - c, native.f, rtol=0, atol=1e-10)
    torch.testing.assert_close(pot.g + c, native.g, rtol=0, atol=1e-10)
    torch.testing.assert_close(pot.value, native.value, rtol=1e-11, atol=0)


@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("rho", [(1.0, 0.5), (math.inf, 0.3)])
def test_unbalanced_matches_native(data, reference, rho):
    problem = Problem(data.C, data.a, data.b, eps=0.1, rho_a=rho[0], rho_b=rho[1], reference=reference)
    pot = solve(problem, "pot", tol=1e-15, max_iter=100_000)
    native = solve(problem, "unbalanced", tol=1e-14, max_iter=100_000)
    torch.testing.assert_close(pot.matrix, native.matrix, rtol=0, atol=1e-12)
    torch.testing.assert_close(pot.f, native.f, rtol=0, atol=1e-11)
    torch.testing.assert_close(pot.g, native.g, rtol=0, atol=1e-11)


def test_emd_is_an_explicit_exact_plan(data):
    plan = solve(Problem(data.C, data.a, data.b), "pot", method="emd")
    P = plan.matrix
    assert plan.explicit is not None and plan.converged
    torch.testing.assert_close(P.sum(1), data.a, rtol=0, atol=1e-12)
    torch.testing.assert_close(P.sum(0), data.b, rtol=0, atol=1e-12)
    torch.testing.assert_close(plan.value, (P * data.C).sum(), rtol=1e-14, atol=0)
    # a vertex: at most n + m - 1 positive entries
    assert int((P > 1e-15).sum()) <= 8 + 6 - 1
    # no entropic plan of the same problem is cheaper
    entropic = solve(Problem(data.C, data.a, data.b, eps=0.05), tol=1e-12)
    assert plan.value <= entropic.value_linear + 1e-12


def test_batched_equals_loop(batch_data):
    d = batch_data
    batched = solve(Problem(d.C, d.a, d.b, eps=0.1, rho_a=1.0, rho_b=1.0), "pot", tol=1e-12, max_iter=10_000)
    assert batched.f.shape == (3, 7) and batched.error.shape == (3,)
    for i in range(3):
        single = solve(Problem(d.C[i], d.a[i], d.b[i], eps=0.1, rho_a=1.0, rho_b=1.0), "pot", tol=1e-12,
                       max_iter=10_000)
        torch.testing.assert_close(batched.matrix[i], single.matrix, rtol=0, atol=1e-15)


def test_gradient_through_pot_matches_native_implicit(data):
    W = torch.randn(data.C.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = []
    for solver, grad in (("pot", "unroll"), ("sinkhorn", "implicit")):
        C = data.C.clone().requires_grad_()
        plan = solve(Problem(C, data.a, data.b, eps=0.2), solver, grad=grad, tol=1e-13, max_iter=20_000)
        grads.append(torch.autograd.grad((W * plan.matrix).sum(), C)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-7, atol=1e-10)


def test_bad_arguments(data):
    with pytest.raises(ValueError, match=r"^method:"):
        solve(Problem(data.C, data.a, data.b, rho_a=1.0), "pot", method="sinkhorn")
    with pytest.raises(ValueError, match=r"^solver: 'pot' does not support a warm start"):
        plan = solve(Problem(data.C, data.a, data.b), tol=1e-6)
        solve(Problem(data.C, data.a, data.b), "pot", init=plan)


def _pot_problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(30, 2, generator=gen, dtype=torch.float64) + 0.5
    return Problem(torch.cdist(x, y) ** 2, eps=0.5)


def test_pot_iterations_are_counted_from_one_and_a_tight_tol_converges_without_warning():
    import warnings

    import ot

    problem = _pot_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tutorial's call: no spurious ConvergenceWarning
        plan = solve(problem, "pot", method="sinkhorn_log", tol=1e-12, max_iter=10_000)
    assert plan.converged and max(float(r.max()) for r in plan.marginal_residual) <= 1e-12
    _, log = ot.sinkhorn(problem.a, problem.b, problem.cost, 0.5, method="sinkhorn_log",
                         stopThr=1e-12 / 30 ** 0.5, numItermax=10_000, log=True)
    assert plan.iterations == log["niter"] + 1


def test_pot_advises_raising_max_iter_only_when_it_ran_all_iterations():
    from otalign import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="no convergence after 5 iterations .*raise max_iter"):
        plan = solve(_pot_problem(), "pot", method="sinkhorn_log", tol=1e-12, max_iter=5)
    assert plan.iterations == 5
