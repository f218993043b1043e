"""The "exact" solver: network-simplex plans and values equal to POT's ``ot.emd`` / ``ot.emd2`` (float64, several
sizes, batched), the value's gradients (cost -> plan, masses -> POT's centred potentials), the proximal solver's
limit, and the errors for relaxed marginals, unequal masses, masks and ``grad="implicit"``."""

from __future__ import annotations

import pytest
import torch

import otalign
from otalign import Problem, solve

ot = pytest.importorskip("ot")
F64 = torch.float64


def _problem(n, m, seed, batch=()):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch + (n, 3), generator=gen, dtype=F64)
    y = torch.randn(batch + (m, 3), generator=gen, dtype=F64) + 0.5
    a = torch.rand(batch + (n,), generator=gen, dtype=F64) + 0.1
    b = torch.rand(batch + (m,), generator=gen, dtype=F64) + 0.1
    return torch.cdist(x, y) ** 2, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


@pytest.mark.parametrize("n, m", [(1, 4), (7, 7), (20, 13), (90, 120)])
def test_matches_emd_and_emd2(n, m):
    C, a, b = _problem(n, m, n * m)
    plan = solve(Problem(C, a, b), "exact")
    torch.testing.assert_close(plan.matrix, ot.emd(a, b, C), rtol=0, atol=1e-14)
    torch.testing.assert_close(plan.value, ot.emd2(a, b, C), rtol=1e-12, atol=1e-14)
    assert plan.converged
    _, log = ot.emd(a.numpy(), b.numpy(), C.numpy(), log=True)
    torch.testing.assert_close(plan.f, torch.from_numpy(log["u"]), rtol=0, atol=1e-12)
    torch.testing.assert_close(plan.dual_value, plan.value, rtol=1e-12, atol=1e-14)


def test_batched_equals_loop_and_float32():
    C, a, b = _problem(9, 11, 1, batch=(3,))
    plan = solve(Problem(C, a, b), "exact")
    expected = torch.stack([ot.emd(a[i], b[i], C[i]) for i in range(3)])
    torch.testing.assert_close(plan.matrix, expected, rtol=0, atol=1e-14)
    assert plan.value.shape == (3,)
    plan32 = solve(Problem(C.float(), a.float(), b.float()), "exact")
    assert plan32.matrix.dtype == torch.float32
    torch.testing.assert_close(plan32.matrix, expected.float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("grad", ["unroll", "envelope"])
def test_value_gradients_match_emd2(grad):
    C0, a0, b0 = _problem(12, 10, 5)
    C, a, b = (t.clone().requires_grad_() for t in (C0, a0, b0))
    plan = solve(Problem(C, a, b), "exact", grad=grad)
    (dC,) = torch.autograd.grad(plan.value, C)
    da, db = torch.autograd.grad(plan.dual_value, (a, b))
    Cr, ar, br = (t.clone().requires_grad_() for t in (C0, a0, b0))
    ot.emd2(ar, br, Cr).backward()
    torch.testing.assert_close(dC, Cr.grad, rtol=0, atol=1e-14)
    torch.testing.assert_close(da - da.mean(), ar.grad, rtol=0, atol=1e-12)  # potentials: defined up to a constant
    torch.testing.assert_close(db - db.mean(), br.grad, rtol=0, atol=1e-12)


def test_detach_gives_no_gradient_and_implicit_is_refused():
    C, a, b = _problem(5, 5, 2)
    C.requires_grad_()
    assert not solve(Problem(C, a, b), "exact", grad="detach").value.requires_grad
    with pytest.raises(ValueError, match="implicit"):
        solve(Problem(C, a, b), "exact", grad="implicit")


def test_proximal_plan_approaches_exact():
    C, a, b = _problem(10, 8, 3)
    exact = solve(Problem(C, a, b), "exact")
    prox = solve(Problem(C, a, b, eps=0.5), "proximal", max_iter=100, tol=0, inner_iter=20)  # last eps: 0.005
    torch.testing.assert_close(prox.value_linear, exact.value, rtol=5e-4, atol=0)
    # of total mass 1: the plans agree but for a few entries
    assert float((prox.matrix - exact.matrix).abs().sum()) < 0.1


def test_errors():
    C, a, b = _problem(5, 4, 0)
    with pytest.raises(ValueError, match="rho_a"):
        solve(Problem(C, a, b, rho_a=1.0), "exact")
    with pytest.raises(ValueError, match="rho_b"):
        solve(Problem(C, a, b, rho_b=2.0), "exact")
    with pytest.raises(ValueError, match="a, b"):
        solve(Problem(C, a, 2 * b), "exact")
    with pytest.raises(ValueError, match="mask"):
        solve(Problem(C, a, b, mask=torch.eye(5, 4, dtype=torch.bool)), "exact")
    with pytest.raises(ValueError, match="init"):
        solve(Problem(C, a, b), "exact", init=(torch.zeros(5, dtype=F64), torch.zeros(4, dtype=F64)))
    assert "exact" in otalign.solvers.available()
