"""``otalign.Aligner``: the configured pipeline cost -> plan -> divergence, against the same steps done by hand."""

from __future__ import annotations

import math

import pytest
import torch

from otalign import Aligner, Problem, solve, targets
from otalign.divergences import kl, robust
from otalign.solvers import Sinkhorn

N = 6


def cosine_cost(seed: int = 0, requires_grad: bool = False):
    gen = torch.Generator().manual_seed(seed)
    Z = torch.randn(2 * N, 4, generator=gen, dtype=torch.float64, requires_grad=requires_grad)
    unit = torch.nn.functional.normalize(Z, dim=-1)
    return Z, -(unit @ unit.T)


MASK = torch.eye(2 * N, dtype=torch.bool)


def test_infonce_configuration_is_nt_xent():
    _, C = cosine_cost()
    aligner = Aligner("sinkhorn", "kl", eps=0.2, rho_a=math.inf, rho_b=0.0, reference="uniform", max_iter=1, tol=0)
    out = aligner(C, targets.paired(N, dtype=torch.float64), mask=MASK)
    logits = (-C / 0.2).masked_fill(MASK, -torch.inf)
    partner = (torch.arange(2 * N) + N) % (2 * N)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(logits, partner), rtol=1e-10, atol=0)


@pytest.mark.parametrize("divergence", ["kl", "robust"])
def test_matches_manual_pipeline(divergence):
    _, C = cosine_cost(seed=1)
    target = targets.from_labels(torch.tensor([0, 1, 0, 2, 1, 2]), dtype=torch.float64)
    aligner = Aligner("unbalanced", divergence, eps=0.5, rho_a=0.2, rho_b=0.2, reference="uniform", max_iter=10, tol=0)
    out = aligner(C, target, mask=MASK)
    plan = solve(Problem(C, eps=0.5, rho_a=0.2, rho_b=0.2, reference="uniform", mask=MASK), "unbalanced",
                 max_iter=10, tol=0)
    expected = (kl if divergence == "kl" else robust)(plan, target)
    torch.testing.assert_close(out.per_anchor, expected, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(out.loss, expected.mean(), rtol=1e-13, atol=0)
    assert out.plan.iterations == 10


def test_loss_averages_over_anchors_with_a_target():
    _, C = cosine_cost(seed=2)
    target = targets.paired(N, dtype=torch.float64)
    target[[0, 4]] = 0.0
    out = Aligner(eps=0.3, max_iter=5, tol=0)(C, target, mask=MASK)
    keep = torch.ones(2 * N, dtype=torch.bool)
    keep[[0, 4]] = False
    torch.testing.assert_close(out.loss, out.per_anchor[keep].mean(), rtol=1e-13, atol=0)


def test_custom_divergence_and_solver_instance():
    _, C = cosine_cost(seed=3)
    calls = []

    def mass_of_positives(plan, target):
        calls.append(plan)
        return -(plan.matrix * target).sum(-1)

    aligner = Aligner(Sinkhorn(keep_iterates=True), mass_of_positives, eps=0.3, max_iter=4, tol=0)
    out = aligner(C, targets.paired(N, dtype=torch.float64), mask=MASK)
    assert len(calls) == 1 and len(out.plan.iterates) == 4
    torch.testing.assert_close(out.per_anchor, -(out.plan.matrix * targets.paired(N, dtype=torch.float64)).sum(-1))


def test_solver_options_are_passed_through():
    _, C = cosine_cost(seed=4)
    out = Aligner("sinkhorn", eps=0.3, max_iter=3, tol=0, keep_iterates=True)(C, targets.paired(N), mask=MASK)
    assert len(out.plan.iterates) == 3


def test_implicit_gradient_through_the_aligner_matches_unroll():
    grads = {}
    for grad in ("implicit", "unroll"):
        Z, C = cosine_cost(seed=5, requires_grad=True)
        aligner = Aligner("sinkhorn", "kl", eps=0.5, max_iter=10_000, tol=1e-13, grad=grad)
        (grads[grad],) = torch.autograd.grad(aligner(C, targets.paired(N, dtype=torch.float64), mask=MASK).loss, Z)
    torch.testing.assert_close(grads["implicit"], grads["unroll"], rtol=1e-8, atol=1e-11)


def test_problem_uses_the_configuration():
    _, C = cosine_cost(seed=6)
    problem = Aligner(eps=0.7, rho_a=0.3, rho_b=math.inf, reference="uniform").problem(C, mask=MASK)
    assert (problem.eps, problem.rho_a, problem.rho_b, problem.reference) == (0.7, 0.3, math.inf, "uniform")


def test_bad_arguments():
    _, C = cosine_cost(seed=7)
    aligner = Aligner(eps=0.3, max_iter=3, tol=0)
    with pytest.raises(ValueError, match=r"^target:.*shape"):
        aligner(C, targets.paired(N + 1), mask=MASK)
    with pytest.raises(ValueError, match=r"^target:.*non-negative"):
        aligner(C, -targets.paired(N), mask=MASK)
    with pytest.raises(ValueError, match=r"^options"):
        Aligner(Sinkhorn(), eps=0.3, keep_iterates=True)
    with pytest.raises(ValueError, match=r"^divergence:"):
        Aligner(divergence="hellinger")
    with pytest.raises(ValueError, match=r"^solver:"):
        Aligner("simplex")
    with pytest.raises(ValueError, match=r"^grad:"):
        Aligner(grad="autodiff")(C, targets.paired(N), mask=MASK)
