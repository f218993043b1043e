"""GCA losses on other solvers (``solver=``): values and gradients against independent plain-torch references, and
clear errors where a solver cannot serve a loss."""

from __future__ import annotations

import math

import pytest
import torch

import otalign
from otalign import targets
from otalign.losses import GCARINCE, GCAUOT, RINCE, GCAInfoNCE, InfoNCE, SupCon
from otalign.solvers import ProximalPoint


def views(n: int = 5, d: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, dtype=torch.float64, generator=gen).requires_grad_() for _ in range(2)]


def masked_cost(z0, z1):
    z = torch.nn.functional.normalize(torch.cat([z0, z1]), dim=1)
    cost = -(z @ z.T)
    return cost.masked_fill(torch.eye(cost.shape[0], dtype=torch.bool), math.inf)


def row_lse(h_cols, cost, eps):
    """``LSE_j[(h_j - C_ij) / eps]`` written out (forbidden pairs have C = inf)."""
    return torch.logsumexp((h_cols[None, :] - cost) / eps, dim=1)


def kl_rows(log_kernel, target):
    """Mean over anchors of ``-sum_j That_ij log Phat_ij`` with both sides row-normalised."""
    log_rows = log_kernel - torch.logsumexp(log_kernel, dim=1, keepdim=True)
    weights = target / target.sum(1, keepdim=True)
    return -(weights * log_rows.clamp_min(-1e300)).sum(1).mean()


def robust_rows(log_kernel, target, q, lam):
    pos = (target * log_kernel.exp()).sum(1)
    total = log_kernel.exp().sum(1)
    return (-(pos ** q) / q + (lam * total) ** q / q).mean()


def reference_proximal_kl(z0, z1, eps, steps, sweeps):
    """Outer proximal step k solves entropic OT at eps / k exactly (here: many plain u, v scaling sweeps on
    ``K = exp(-k C / eps)``), so after ``steps`` steps the plan is the balanced Sinkhorn plan at eps / steps."""
    cost = masked_cost(z0, z1)
    kernel = torch.exp(-cost * steps / eps)
    v = torch.ones(cost.shape[0], dtype=cost.dtype)
    for _ in range(sweeps):
        u = 1.0 / (kernel @ v)
        v = 1.0 / (kernel.T @ u)
    log_kernel = -cost * steps / eps + torch.log(v)[None, :]
    return kl_rows(log_kernel, targets.paired(z0.shape[0], dtype=cost.dtype))


def reference_translation_invariant_uot(z0, z1, eps, rho, iterations, q, lam, r1, r2):
    """T iterations of damped log-domain scaling (a = b = 1, R = 1), each followed by the optimal dual translation
    ``t* = (log sum e^{-f/rho} - log sum e^{-g/rho}) / (2 / rho)``; then r1 KL + r2 robust on ``K diag(v_T)``."""
    cost = masked_cost(z0, z1)
    damping = rho / (rho + eps)
    g = torch.zeros(cost.shape[0], dtype=cost.dtype)
    for _ in range(iterations):
        f = -damping * eps * row_lse(g, cost, eps)
        g = -damping * eps * row_lse(f, cost.T, eps)
        shift = (torch.logsumexp(-f / rho, 0) - torch.logsumexp(-g / rho, 0)) / (2.0 / rho)
        f, g = f + shift, g - shift
    log_kernel = (g[None, :] - cost) / eps
    target = targets.paired(z0.shape[0], dtype=cost.dtype)
    return r1 * kl_rows(log_kernel, target) + r2 * robust_rows(log_kernel, target, q, lam)


def value_and_grads(loss_value, z0, z1):
    grads = torch.autograd.grad(loss_value, (z0, z1))
    return loss_value.detach(), grads


def test_gca_infonce_on_the_proximal_solver_matches_its_reference():
    z0, z1 = views()
    loss = GCAInfoNCE(temperature=0.5, iterations=3, solver="proximal", solver_options={"inner_iter": 300})
    ours = value_and_grads(loss(z0, z1), z0, z1)
    reference = value_and_grads(reference_proximal_kl(z0, z1, 0.5, 3, 900), z0, z1)
    torch.testing.assert_close(ours[0], reference[0], rtol=1e-7, atol=1e-9)
    for mine, theirs in zip(ours[1], reference[1]):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-8)


def test_proximal_steps_sharpen_the_plan_beyond_one_sinkhorn_solve():
    """Each proximal step halves the effective eps, so the loss differs from the plain solver's."""
    z0, z1 = views(seed=1)
    plain = GCAInfoNCE(iterations=3)(z0, z1)
    proximal = GCAInfoNCE(iterations=3, solver=ProximalPoint(inner_iter=50))(z0, z1)
    assert not torch.allclose(plain, proximal, rtol=1e-3)


@pytest.mark.parametrize("rho", [0.2, 2.0])
def test_gca_uot_on_the_translation_invariant_solver_matches_its_reference(rho):
    z0, z1 = views(seed=2)
    settings = dict(temperature=0.5, iterations=3, rho=rho, q=0.6, lam=0.01, r1=1.0, r2=0.5)
    ours = value_and_grads(GCAUOT(**settings, solver="unbalanced")(z0, z1), z0, z1)
    reference = value_and_grads(
        reference_translation_invariant_uot(z0, z1, 0.5, rho, 3, 0.6, 0.01, 1.0, 0.5), z0, z1
    )
    torch.testing.assert_close(ours[0], reference[0], rtol=1e-10, atol=1e-12)
    for mine, theirs in zip(ours[1], reference[1]):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-11)
    plain = GCAUOT(**settings)(z0, z1)
    if rho == 2.0:  # the translation changes the iterates: the reference tells the two solvers apart
        assert abs(float(plain.detach()) - float(ours[0])) > 1e-3


@pytest.mark.parametrize("cls", [InfoNCE, RINCE, GCAInfoNCE, GCARINCE, GCAUOT])
def test_pot_is_refused_with_the_reason(cls):
    """POT's T-iteration scheme starts with a column step from its own scalings: a different plan and gauge."""
    with pytest.raises(ValueError, match=r"solver: 'pot' does not support exactly max_iter iterations.*updates the columns first"):
        cls(solver="pot")


@pytest.mark.parametrize("cls", [InfoNCE, SupCon, RINCE, GCAInfoNCE, GCARINCE, GCAUOT])
def test_geomloss_is_refused_with_the_reason(cls):
    with pytest.raises(ValueError, match=r"solver: 'geomloss' does not support exactly max_iter iterations.*no iterates to unroll"):
        cls(solver="geomloss")


def test_solver_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="solver: unknown solver 'nope'"):
        GCAInfoNCE(solver="nope")
    with pytest.raises(ValueError, match="solver_options: the 'sinkhorn' solver has no option.*inner_iter"):
        GCAInfoNCE(solver="sinkhorn", solver_options={"inner_iter": 3})
    with pytest.raises(ValueError, match="solver_options: .* given with a solver instance"):
        GCAInfoNCE(solver=ProximalPoint(), solver_options={"inner_iter": 3})
    with pytest.raises(TypeError, match="solver_options: expected a dict"):
        GCAInfoNCE(solver="proximal", solver_options=[("inner_iter", 3)])
    with pytest.raises(TypeError, match="solver: expected a solver name"):
        GCAInfoNCE(solver=3)


def test_a_registered_solver_serves_a_loss():
    name = "test_loss_half_sinkhorn"

    if name not in otalign.solvers.available():

        @otalign.solvers.register(name)
        class Registered(otalign.solvers.Sinkhorn):
            """Plain Sinkhorn under another name."""

    z0, z1 = views(seed=4)
    torch.testing.assert_close(GCAInfoNCE(solver=name)(z0, z1), GCAInfoNCE()(z0, z1))
    assert f"solver={name!r}" in repr(GCAInfoNCE(solver=name))


def test_proximal_gca_losses_warn_that_they_are_another_objective():
    """The proximal loss is the GCA divergence at eps / T: its value runs away with T (the robust term grows like
    exp(q T / eps)), while the Sinkhorn loss settles; building one warns and says which solver gives the GCA loss."""
    from otalign.losses import GCAUOT

    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(32, 8, generator=gen)
    z1 = z0 + 0.3 * torch.randn(32, 8, generator=gen)
    with pytest.warns(UserWarning, match=r"GCAUOT\(solver='proximal'\).*temperature eps / T.*solver='sinkhorn'"):
        short, long = GCAUOT(solver="proximal", iterations=2), GCAUOT(solver="proximal", iterations=10)
    settled = [GCAUOT(iterations=t)(z0, z1).item() for t in (2, 10)]
    assert abs(settled[0] - settled[1]) < 0.05 * abs(settled[1])
    assert long(z0, z1).item() < 10 * min(short(z0, z1).item(), -1.0)  # runs away with T
