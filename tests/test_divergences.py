"""Divergences against independent formulas: ``kl`` with the rows-only plan is NT-Xent, ``robust`` with one row
step is RINCE (Chuang et al. 2022), and the multistep KL to a permutation target is non-increasing.

Setting (docs/maths.md, section 2): ``Z = [z0; z1]`` (2N x d), ``s = cos(Z_i, Z_j)``, cost ``-s`` with self-pairs masked,
eps the temperature. float64.
"""

from __future__ import annotations

import math

import pytest
import torch

import otalign
from otalign import Plan, Problem, solve, targets
from otalign.divergences import Robust, Weighted, anchor_weights, get_divergence, kl, robust

N, D, EPS = 8, 5, 0.3


def similarities(seed: int = 0, requires_grad: bool = False):
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(N, D, generator=gen, dtype=torch.float64, requires_grad=requires_grad)
    z1 = torch.randn(N, D, generator=gen, dtype=torch.float64, requires_grad=requires_grad)
    Z = torch.nn.functional.normalize(torch.cat([z0, z1]), dim=-1)
    return (z0, z1), Z @ Z.T


def rows_only_plan(s, reference="uniform", eps=EPS):
    """One row step of the semi-relaxed problem (rows hard, columns free): the row-normalised kernel."""
    mask = torch.eye(2 * N, dtype=torch.bool)
    problem = Problem(-s, eps=eps, rho_a=math.inf, rho_b=0.0, reference=reference, mask=mask)
    return solve(problem, max_iter=1, tol=0)


def nt_xent(s, eps=EPS):
    """SimCLR's NT-Xent, written independently: cross-entropy over logits s/eps without the diagonal."""
    logits = (s / eps).masked_fill(torch.eye(2 * N, dtype=torch.bool), -torch.inf)
    partner = (torch.arange(2 * N) + N) % (2 * N)
    return torch.nn.functional.cross_entropy(logits, partner)


@pytest.mark.parametrize("reference", ["uniform", "product"])
def test_kl_with_rows_only_plan_is_nt_xent(reference):
    (z0, z1), s = similarities(requires_grad=True)
    ours = kl(rows_only_plan(s, reference), targets.paired(N, dtype=torch.float64)).mean()
    expected = nt_xent(s)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)
    g_ours = torch.autograd.grad(ours, (z0, z1), retain_graph=True)
    g_expected = torch.autograd.grad(expected, (z0, z1))
    for a, b in zip(g_ours, g_expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("q, lam", [(0.5, 0.01), (1.0, 0.5), (0.1, 1.0)])
def test_robust_with_one_row_step_is_rince(q, lam):
    """Per anchor i: ``-(1/q) exp(q s_pos/eps) + (1/q) (lam sum_{j != i} exp(s_ij/eps))^q``."""
    _, s = similarities(seed=1)
    ours = robust(rows_only_plan(s), targets.paired(N, dtype=torch.float64), q=q, lam=lam)
    partner = (torch.arange(2 * N) + N) % (2 * N)
    expected = torch.empty(2 * N, dtype=torch.float64)
    for i in range(2 * N):
        s_pos = s[i, partner[i]]
        negatives = sum(math.exp(s[i, j].item() / EPS) for j in range(2 * N) if j != i)
        expected[i] = -math.exp(q * s_pos.item() / EPS) / q + (lam * negatives) ** q / q
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


def test_multistep_kl_to_a_permutation_target_is_non_increasing():
    """Each half-step is a KL projection onto a constraint set that contains the (scaled) permutation target, so
    ``KL(P_tgt | P_t)`` after every row step cannot increase."""
    _, s = similarities(seed=2)
    mask = torch.eye(2 * N, dtype=torch.bool)
    problem = Problem(-s, eps=0.2, reference="uniform", mask=mask)
    plan = solve(problem, tol=0, max_iter=15, keep_iterates=True)
    target = targets.paired(N, dtype=torch.float64)
    values = [kl(Plan(problem, f, g, t, False), target).mean().item() for t, (f, g) in enumerate(plan.iterates)]
    assert len(values) == 15
    for before, after in zip(values, values[1:]):
        assert after <= before + 1e-12
    assert values[-1] < values[0] - 1e-3


def test_kl_rows_without_target_mass_are_zero_and_unweighted():
    _, s = similarities(seed=3)
    target = targets.paired(N, dtype=torch.float64)
    target[0] = 0.0
    per_anchor = kl(rows_only_plan(s), target)
    assert per_anchor[0] == 0.0 and (per_anchor[1:] > 0).all()
    weights = anchor_weights(target)
    assert weights[0] == 0.0 and torch.all(weights[1:] == 1.0)


def test_kl_normalises_the_target_rows():
    """Scaling a target row does not change its KL term."""
    _, s = similarities(seed=4)
    plan = rows_only_plan(s)
    target = targets.from_labels(torch.tensor([0, 1, 0, 1, 2, 2, 0, 1]), dtype=torch.float64)
    scaled = target * torch.arange(1, 2 * N + 1, dtype=torch.float64)[:, None]
    torch.testing.assert_close(kl(plan, scaled), kl(plan, target), rtol=1e-13, atol=0)


def test_weighted_sum_and_named_lookup():
    _, s = similarities(seed=5)
    plan = rows_only_plan(s)
    target = targets.paired(N, dtype=torch.float64)
    combined = Weighted([(1.0, kl), (0.3, Robust(q=0.6, lam=0.01))])(plan, target)
    expected = kl(plan, target) + 0.3 * robust(plan, target, q=0.6, lam=0.01)
    torch.testing.assert_close(combined, expected, rtol=1e-14, atol=0)
    assert get_divergence("kl") is kl and get_divergence("robust") is robust
    assert otalign.divergences.get_divergence(kl) is kl


def test_bad_arguments():
    _, s = similarities(seed=6)
    plan = rows_only_plan(s)
    with pytest.raises(ValueError, match=r"^target:.*shape"):
        kl(plan, targets.paired(N + 1))
    with pytest.raises(ValueError, match=r"^target:.*shape"):
        robust(plan, targets.paired(N - 1))
    with pytest.raises(ValueError, match=r"^target:.*non-negative"):
        kl(plan, -targets.paired(N))
    with pytest.raises(ValueError, match=r"^q:"):
        robust(plan, targets.paired(N), q=0.0)
    with pytest.raises(ValueError, match=r"^lam:"):
        robust(plan, targets.paired(N), lam=-1.0)
    with pytest.raises(ValueError, match=r"^divergence:"):
        get_divergence("wasserstein")
    with pytest.raises(ValueError, match=r"^terms:"):
        Weighted([])(plan, targets.paired(N))


def test_robust_with_an_empty_target_row_has_finite_gradients():
    """The robust term of an anchor without positives is 0 with a zero gradient, not NaN."""
    (z0, z1), s = similarities(seed=5, requires_grad=True)
    target = targets.paired(N, dtype=torch.float64)
    target[3] = 0.0
    per_anchor = robust(rows_only_plan(s), target)
    assert per_anchor[3].item() == 0.0
    per_anchor.sum().backward()
    assert torch.isfinite(z0.grad).all() and torch.isfinite(z1.grad).all()


@pytest.mark.parametrize("reference", ["uniform", "product"])
def test_divergences_of_a_plan_with_a_zero_mass_row(reference):
    """A zero-mass anchor has an empty plan row: robust gives 0 for it, kl gives +inf where the target asks for
    mass there (KL(q | 0)) and 0 where it does not; nothing is NaN, and gradients stay finite otherwise."""
    (z0, z1), s = similarities(seed=6, requires_grad=True)
    a = torch.ones(2 * N, dtype=torch.float64)
    a[2] = 0.0
    mask = torch.eye(2 * N, dtype=torch.bool)
    problem = Problem(-s, a, torch.ones(2 * N, dtype=torch.float64), eps=EPS, rho_a=1.0, rho_b=1.0,
                      reference=reference, mask=mask)
    plan = solve(problem, max_iter=5, tol=0)
    target = targets.paired(N, dtype=torch.float64)
    assert robust(plan, target)[2].item() == 0.0
    assert kl(plan, target)[2].item() == math.inf
    empty = target.clone()
    empty[2] = 0.0
    total = kl(plan, empty).sum() + robust(plan, empty).sum()
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(z0.grad).all() and torch.isfinite(z1.grad).all()


@pytest.mark.parametrize("dtype, scales", [
    (torch.float64, [1e-300, 1e-310, 1e300]),
    (torch.float32, [1e-38, 1e-40, 1e38]),
])
def test_kl_is_invariant_to_the_scale_of_the_target(dtype, scales):
    """Targets scaled into the subnormal range (1e-310, 1e-40) used to be divided by ``tiny`` instead of their
    row sums (KL 0.03 instead of 3.0); targets near the top of the range overflowed their row sums."""
    gen = torch.Generator().manual_seed(2)
    C = torch.rand(6, 6, generator=gen, dtype=dtype)
    plan = solve(Problem(C, eps=0.1), max_iter=20, tol=0)
    target = torch.rand(6, 6, generator=gen, dtype=dtype) * 0.5 + 0.5
    reference = kl(plan, target)
    for scale in scales:
        rtol = 1e-4 if dtype == torch.float32 else 1e-9  # rounding of the scaled (maybe subnormal) target itself
        torch.testing.assert_close(kl(plan, target * scale), reference, rtol=rtol, atol=0)


def test_kl_of_a_target_asking_for_a_forbidden_pair_is_infinite():
    """KL(q | p) with q > 0 where p = 0 is +inf; the clamp of log 0 used to make it a huge finite number."""
    _, s = similarities(seed=7)
    plan = rows_only_plan(s)
    target = targets.paired(N, dtype=torch.float64)
    target[1, 1] = 1.0  # the self-pair is masked: zero mass in every plan
    per_anchor = kl(plan, target)
    assert per_anchor[1].item() == math.inf
    assert torch.isfinite(per_anchor[torch.arange(2 * N) != 1]).all()


def test_robust_default_q_and_lam_match_the_losses_and_the_maths_page():
    import inspect
    from pathlib import Path

    from otalign.divergences import ROBUST_LAM, ROBUST_Q, Robust
    from otalign.losses import GCARINCE, GCAUOT, RINCE

    for function in (robust, RINCE.__init__, GCARINCE.__init__, GCAUOT.__init__):
        parameters = inspect.signature(function).parameters
        assert parameters["q"].default == ROBUST_Q == 0.6, function
        assert parameters["lam"].default == ROBUST_LAM, function
    assert (Robust().q, Robust().lam) == (ROBUST_Q, ROBUST_LAM)
    maths = (Path(__file__).parents[1] / "docs" / "maths.md").read_text()
    assert f"robust ($q = {ROBUST_Q}$" in maths
