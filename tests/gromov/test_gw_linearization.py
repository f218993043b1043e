"""The linearisation's shortcuts against the plain products: the rank-one start, the symmetry test, the energy."""

from __future__ import annotations

import pytest
import torch

import otalign
from otalign import GWProblem
from otalign.gromov.linearization import Linearization
from otalign.gromov.start import MatrixPlan, ProductPlan

from gw_reference import brute_energy, clouds, sqdist


def _asymmetric(n: int, seed: int, batch=None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    return torch.rand(lead + (n, n), generator=gen, dtype=torch.float64) + 0.1


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("loss", ["square", "kl"])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_product_start_equals_the_dense_product(batch, loss, symmetric, alpha):
    x, y, a, b = clouds(7, 5, seed=11, batch=batch)
    cx, cy = (sqdist(x), sqdist(y)) if symmetric else (_asymmetric(7, 1, batch), _asymmetric(5, 2, batch))
    lead = () if batch is None else (batch,)
    cross = torch.rand(lead + (7, 5), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    problem = GWProblem(cx, cy, a, b, eps=0.1, loss=loss, cost_xy=cross if alpha < 1 else None, alpha=alpha)
    assert problem.symmetric is symmetric
    objective = Linearization(problem)
    product = ProductPlan(a, b)
    dense = MatrixPlan(a.unsqueeze(-1) * b.unsqueeze(-2))
    torch.testing.assert_close(objective.gradient(product), objective.gradient(dense), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(objective.energy(product), objective.energy(dense), rtol=1e-12, atol=1e-14)
    if batch is None:
        torch.testing.assert_close(objective.energy(product), brute_energy(cx, cy, dense.matrix, loss),
                                   rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("batch", [None, 2])
def test_symmetry_test_exact_near_and_asymmetric(batch):
    x, y, a, b = clouds(6, 6, seed=5, batch=batch)
    cx, cy = sqdist(x), sqdist(y)
    exact = (cx + cx.transpose(-1, -2)) / 2
    assert torch.equal(exact, exact.transpose(-1, -2))
    near = exact.clone()
    near[..., 0, 1] += 1e-13  # within POT's atol: still symmetric, by the tolerance test
    off = exact.clone()
    off[..., 0, 1] += 1e-3
    assert GWProblem(exact, cy, eps=0.1).symmetric
    assert GWProblem(near, cy, eps=0.1).symmetric
    assert not GWProblem(off, cy, eps=0.1).symmetric
    assert not GWProblem(exact, _asymmetric(6, 4, batch), eps=0.1).symmetric


@pytest.mark.parametrize("grad", ["detach", "envelope", "unroll"])
def test_returned_values_are_the_objective_of_the_returned_plan(grad):
    x, y, a, b = clouds(8, 6, seed=2)
    cx, cy = sqdist(x), sqdist(y)
    plan = otalign.solve(GWProblem(cx, cy, a, b, eps=0.05), max_iter=4, tol=0.0, grad=grad, inner_max_iter=30,
                         inner_tol=0.0)
    matrix = plan.matrix.detach()
    torch.testing.assert_close(plan.value.detach(), brute_energy(cx, cy, matrix, "square"), rtol=1e-10, atol=1e-14)
