"""The annealing schedule against geomloss's own (its legacy ``epsilon_schedule``), and the symmetric step's
stacked (n == m) and separate (n != m) paths against each other."""

from __future__ import annotations

import pytest
import torch

from otalign import PointCloud, Problem
from otalign.symmetric_sinkhorn import Potentials, SymmetricTerms, annealing_schedule, bounding_diameter

legacy = pytest.importorskip("geomloss._legacy.sinkhorn_divergence")


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("diameter, blur, scaling", [(3.0, 0.05, 0.5), (1.7, 0.01, 0.9), (0.02, 0.05, 0.5)])
def test_schedule_is_geomloss_schedule(p, diameter, blur, scaling):
    assert annealing_schedule(p, diameter, blur, scaling) == pytest.approx(
        legacy.epsilon_schedule(p, diameter, blur, scaling), rel=1e-14, abs=0)


def test_bounding_diameter_is_geomloss_estimate():
    x, y = torch.randn(2, 30, 4, dtype=torch.float64), torch.randn(2, 20, 4, dtype=torch.float64) + 1
    assert bounding_diameter(x, y) == pytest.approx(legacy.max_diameter(x.reshape(-1, 4), y.reshape(-1, 4)))


def test_stacked_step_equals_separate_steps():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, generator=gen, dtype=torch.float64), torch.rand(12, 3, generator=gen, dtype=torch.float64)
    a, b = torch.full((12,), 1 / 12, dtype=torch.float64), torch.rand(12, generator=gen, dtype=torch.float64)
    b = b / b.sum()
    current = Potentials(*[torch.randn(12, generator=gen, dtype=torch.float64) * 0.1 for _ in range(4)])
    stacked = SymmetricTerms(x, y, a, b, "half_sqeuclidean", 0.7, True, False, False, eps=0.05)
    assert stacked.stacked
    separate = SymmetricTerms(x, y[:11], a, b[:11], "half_sqeuclidean", 0.7, True, False, False, eps=0.05)
    assert not separate.stacked
    separate.problems = [  # the same four problems as separate ones, built here
        Problem(PointCloud(u, v, "half_sqeuclidean"), w, w, eps=0.05, rho_a=0.7, rho_b=0.7)
        for u, v, w in ((x, y, b), (y, x, a), (x, x, a), (y, y, b))
    ]
    new_stacked, _ = stacked.step(0.1, current)
    new_separate, _ = separate.step(0.1, current)
    for got, want in zip(new_stacked.as_list(), new_separate.as_list()):
        torch.testing.assert_close(got, want, atol=1e-14, rtol=0)
