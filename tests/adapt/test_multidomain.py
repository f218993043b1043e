"""BarycentricDomainMapping: the fitted support is POT's free-support barycenter from the same initial points, fitted
samples go to their barycentric images, new points move by their nearest fitted sample's displacement, the mapping
helps a classifier across shifted domains on small data, and input errors name the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otalign.adapt import BarycentricDomainMapping, NotFittedError

ot = pytest.importorskip("ot")


def _domains(n=30, seed=0):
    """Three domains with the same two classes, each shifted and stretched differently."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k, (shift, scale) in enumerate([((0, 0), 1.0), ((6, 3), 1.5), ((-4, 8), 0.7)]):
        y = np.arange(n) % 2
        x = rng.normal(size=(n, 2)) * 0.3 + np.stack([3.0 * y, np.zeros(n)], 1)
        xs.append(scale * x + np.array(shift))
        ys.append(y)
    return xs, ys


def test_support_matches_pot_and_fitted_samples_map_to_barycentric_images():
    xs, _ = _domains()
    m = BarycentricDomainMapping(n_support=30, max_iter=20).fit(xs)
    pooled = torch.from_numpy(np.concatenate(xs))
    init = pooled[torch.randperm(pooled.shape[0], generator=torch.Generator().manual_seed(0))[:30]]
    expected = ot.lp.free_support_barycenter([torch.from_numpy(x) for x in xs], [torch.full((30,), 1 / 30,
                                             dtype=torch.float64)] * 3, init, numItermax=20)
    np.testing.assert_allclose(m.support_, expected.numpy(), rtol=0, atol=1e-10)
    mapped = m.transform(xs[1], 1)
    assert isinstance(mapped, np.ndarray) and mapped.shape == (30, 2)
    plan = m.couplings_[1].numpy()
    np.testing.assert_allclose(mapped, (plan / plan.sum(0)).T @ m.support_, rtol=0, atol=1e-12)
    # n_support = n_k with uniform masses: the exact plan is a permutation, every sample lands on a support point
    distances = ((mapped[:, None, :] - m.support_[None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(distances, 0.0, atol=1e-20)


def test_new_points_move_by_nearest_displacement():
    xs, _ = _domains()
    m = BarycentricDomainMapping(n_support=20).fit(xs)
    mapped = m.transform(xs[2], 2)
    new = xs[2][:5] + 1e-3
    np.testing.assert_allclose(m.transform(new, 2), mapped[:5] + 1e-3, rtol=0, atol=1e-12)


def test_mapping_helps_a_classifier_across_domains():
    from sklearn.neighbors import KNeighborsClassifier

    xs, ys = _domains(n=40, seed=1)
    m = BarycentricDomainMapping(n_support=40, solver="sinkhorn", eps=2.0).fit(xs)
    train_x = np.concatenate([m.transform(xs[0], 0), m.transform(xs[1], 1)])
    mapped_score = KNeighborsClassifier(1).fit(train_x, np.concatenate(ys[:2])).score(m.transform(xs[2], 2), ys[2])
    raw_score = KNeighborsClassifier(1).fit(np.concatenate(xs[:2]), np.concatenate(ys[:2])).score(xs[2], ys[2])
    assert mapped_score >= 0.9 > raw_score


def test_errors_name_the_argument():
    xs, _ = _domains()
    with pytest.raises(ValueError, match="Xs"):
        BarycentricDomainMapping().fit([xs[0]])
    with pytest.raises(ValueError, match="Xs"):
        BarycentricDomainMapping().fit([xs[0], xs[1][:, :1]])
    with pytest.raises(ValueError, match="n_support"):
        BarycentricDomainMapping(n_support=0)
    with pytest.raises(ValueError, match="n_support"):
        BarycentricDomainMapping(n_support=1000).fit(xs)
    with pytest.raises(NotFittedError):
        BarycentricDomainMapping().transform(xs[0], 0)
    m = BarycentricDomainMapping(n_support=10, max_iter=3).fit(xs)
    with pytest.raises(ValueError, match="domain"):
        m.transform(xs[0], 3)
    with pytest.raises(ValueError, match="X"):
        m.transform(xs[0][:, :1], 0)
    with pytest.raises(ValueError, match="eps"):
        m.set_params(eps=-1.0)
    assert m.eps == 0.1
