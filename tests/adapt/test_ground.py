"""Ground costs of the adaptation estimators: metrics and normalisations as POT's, the label-cost rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from otalign.adapt import ground

ot = pytest.importorskip("ot")


@pytest.mark.parametrize("size", [(5, 7), (4, 6)])  # odd and even number of entries
def test_median_is_numpys(size):
    c = torch.rand(size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert float(ground.median(c)) == float(np.median(c.numpy()))


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("norm", [None, "median", "max", "log", "loglog"])
def test_cost_and_norm_match_pot(domains, metric, norm):
    xs, xt = torch.from_numpy(domains.Xs), torch.from_numpy(domains.Xt)
    c = ground.ground_cost(xs, xt, metric)
    ours = ground.normalise(c, norm, ground.normalisation_value(c, norm))
    theirs = ot.utils.cost_normalization(ot.dist(domains.Xs, domains.Xt, metric=metric), norm)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-12, atol=1e-12)


def test_callable_metric_and_bad_metric(domains):
    xs, xt = torch.from_numpy(domains.Xs), torch.from_numpy(domains.Xt)
    l1 = ground.ground_cost(xs, xt, lambda x, y: (x[:, None] - y[None]).abs().sum(-1))
    np.testing.assert_allclose(l1.numpy(), ot.dist(domains.Xs, domains.Xt, metric="cityblock"), rtol=1e-12)
    with pytest.raises(ValueError, match="metric: expected a cost of shape"):
        ground.ground_cost(xs, xt, lambda x, y: x @ x.T)
    with pytest.raises(ValueError, match="metric: expected a callable"):
        ground.check_metric("manhattan")
    with pytest.raises(ValueError, match="norm: expected None or one of"):
        ground.check_norm("mean")


def test_zero_cost_cannot_be_normalised():
    with pytest.raises(ValueError, match="norm: the max of the cost is 0"):
        ground.normalisation_value(torch.zeros(3, 3), "max")


def test_label_cost_rule():
    c = torch.tensor([[0.1, 0.5, 0.2], [0.3, 1.0, 0.4]], dtype=torch.float64)
    ys, yt = torch.tensor([0, 1]), torch.tensor([0, -1, 0])
    finite, mask = ground.label_cost(c, ys, yt, 3.0)
    expected = c.clone()
    expected[1, 0] = expected[1, 2] = 3.0  # labelled, different labels: limit_max * max(C) = 3
    assert mask is None and torch.equal(finite, expected)
    same, mask = ground.label_cost(c, ys, yt, math.inf)
    assert torch.equal(same, c) and mask.tolist() == [[False, False, False], [True, False, True]]


def test_label_cost_forbidding_a_whole_row_is_an_error():
    c = torch.rand(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="source sample 1 no admissible partner"):
        ground.label_cost(c, torch.tensor([0, 1]), torch.tensor([0, 0]), math.inf)
