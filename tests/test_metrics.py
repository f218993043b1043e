"""Tests of otalign.metrics against plain reference implementations and known behaviour."""

import math

import numpy as np
import pytest
import torch

from otalign import metrics
from otalign.metrics import alignment, knn_accuracy, linear_probe, sample_per_class, uniformity, wdm


def blobs(n_per_class: int, num_classes: int, dim: int, spread: float, seed: int, noise_seed: int = 0):
    """Gaussian blobs: centres drawn from ``seed`` (scaled by ``spread``), unit noise from ``noise_seed``."""
    centres = spread * torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    noise = torch.randn(labels.numel(), dim, generator=torch.Generator().manual_seed(1000 + noise_seed))
    return centres[labels] + noise, labels


# ------------------------------------------------------------------------------------------------ linear probe
def test_probe_separable_blobs_near_one():
    x_train, y_train = blobs(50, 3, 5, spread=6.0, seed=0)
    x_test, y_test = blobs(50, 3, 5, spread=6.0, seed=0, noise_seed=1)
    assert linear_probe(x_train, y_train, x_test, y_test) > 0.97


def test_probe_random_labels_near_chance():
    g = torch.Generator().manual_seed(0)
    x_train, x_test = torch.randn(200, 5, generator=g), torch.randn(800, 5, generator=g)
    y_train, y_test = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (800,), generator=g)
    assert abs(linear_probe(x_train, y_train, x_test, y_test) - 0.25) < 0.08


def test_probe_matches_sklearn_logistic_regression():
    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    x, y = blobs(30, 3, 4, spread=1.0, seed=3)
    weight_decay = 0.1
    mean, std = x.mean(0), x.std(0, unbiased=False)
    xs = ((x - mean) / std).double()
    w, b = metrics.train_linear_classifier(xs, y, 3, weight_decay=weight_decay, max_iter=500)
    ours = torch.softmax(xs @ w.T + b, 1).numpy()
    # sklearn minimises 0.5 |W|^2 + C sum_i CE_i, i.e. ours times 1 / weight_decay with C = 1 / (weight_decay N)
    ref = sklearn_lm.LogisticRegression(C=1.0 / (weight_decay * len(y)), tol=1e-10, max_iter=5000)
    ref.fit(xs.numpy(), y.numpy())
    np.testing.assert_allclose(ours, ref.predict_proba(xs.numpy()), atol=1e-4)


def test_few_label_probe_trains_on_exactly_k_per_class(monkeypatch):
    x, y = blobs(20, 4, 3, spread=4.0, seed=1)
    y = y * 10 + 7  # arbitrary label values: mapped to 0..K-1 inside
    seen = []
    real = metrics.train_linear_classifier

    def recording(features, labels, num_classes, **kw):
        seen.append((features.clone(), labels.clone(), num_classes))
        return real(features, labels, num_classes, **kw)

    monkeypatch.setattr(metrics, "train_linear_classifier", recording)
    linear_probe(x, y, x, y, labels_per_class=3, draws=4, seed=5)
    assert len(seen) == 4
    for features, labels, num_classes in seen:
        assert num_classes == 4
        assert torch.equal(torch.bincount(labels, minlength=4), torch.full((4,), 3))
        assert features.shape == (12, 3)
    assert len({tuple(lab.tolist()) + tuple(f.flatten().tolist()) for f, lab, _ in seen}) > 1  # draws differ


def test_sample_per_class_exact_and_errors():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    idx = sample_per_class(labels, 2, generator=torch.Generator().manual_seed(0))
    assert idx.unique().numel() == idx.numel() == 6
    assert torch.equal(torch.bincount(labels[idx]), torch.tensor([2, 2, 2]))
    with pytest.raises(ValueError, match="labels_per_class"):
        sample_per_class(labels, 3)


def test_probe_few_label_reproducible_and_bad_input():
    x, y = blobs(10, 3, 4, spread=2.0, seed=2)
    a = linear_probe(x, y, x, y, labels_per_class=2, draws=2, seed=1)
    assert a == linear_probe(x, y, x, y, labels_per_class=2, draws=2, seed=1)
    with pytest.raises(ValueError, match="train_labels"):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="train_features, test_features"):
        linear_probe(x, y, x[:, :2], y)
    assert linear_probe(x, y, x, y.float(), labels_per_class=2, draws=2, seed=1) == a  # float labels read alike
    names = np.array(["a", "b", "c", "d"])[y.numpy()]
    assert linear_probe(x, names, x, list(names), labels_per_class=2, draws=2, seed=1) == a  # and strings
    with pytest.raises(TypeError, match="test_labels"):
        linear_probe(x, y, x, [None] * len(y))


# ------------------------------------------------------------------------------------------------ kNN
def knn_reference(train, y_train, test, y_test, k, temperature):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    correct = 0
    for x, label in zip(test, y_test):
        sims = train @ x
        order = np.argsort(-sims)[:k]
        votes = {}
        for j in order:
            votes[y_train[j]] = votes.get(y_train[j], 0.0) + math.exp(sims[j] / temperature)
        correct += max(votes, key=votes.get) == label
    return correct / len(y_test)


@pytest.mark.parametrize("k,temperature", [(1, 0.07), (7, 0.07), (15, 0.5)])
def test_knn_matches_brute_force(k, temperature):
    g = torch.Generator().manual_seed(k)
    x_train, y_train = blobs(30, 3, 6, spread=0.6, seed=k)
    x_test = x_train[::3] + 0.5 * torch.randn(30, 6, generator=g)
    y_test = y_train[::3]
    ours = knn_accuracy(x_train, y_train, x_test, y_test, k=k, temperature=temperature, block_size=7)
    ref = knn_reference(x_train.numpy(), y_train.numpy(), x_test.numpy(), y_test.numpy(), k, temperature)
    assert ours == pytest.approx(ref)


def test_knn_perfect_on_training_set_with_k1():
    x, y = blobs(10, 4, 5, spread=1.0, seed=0)
    assert knn_accuracy(x, y, x, y, k=1) == 1.0


# ------------------------------------------------------------------------------------------------ Wang & Isola
def test_alignment_and_uniformity_match_plain_formulas():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    u = z0.numpy() / np.linalg.norm(z0.numpy(), axis=1, keepdims=True)
    v = z1.numpy() / np.linalg.norm(z1.numpy(), axis=1, keepdims=True)
    for alpha in (1, 2, 3):
        ref = np.mean([np.linalg.norm(u[i] - v[i]) ** alpha for i in range(12)])
        assert alignment(z0, z1, alpha=alpha) == pytest.approx(ref, rel=1e-6)
    for t in (0.5, 2.0):
        pairs = [np.exp(-t * np.sum((u[i] - u[j]) ** 2)) for i in range(12) for j in range(i + 1, 12)]
        assert uniformity(z0, t=t) == pytest.approx(np.log(np.mean(pairs)), rel=1e-6)
        assert uniformity(z0, t=t, block_size=5) == pytest.approx(np.log(np.mean(pairs)), rel=1e-6)


def test_alignment_zero_for_identical_views_and_scale_invariant():
    z = torch.randn(8, 3)
    assert alignment(z, 5 * z) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------ WDM
def test_wdm_orders_dependence():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(150, 2, generator=g)
    independent = wdm(z0, torch.randn(150, 2, generator=g), eps=0.1)
    noisy = wdm(z0, z0 + 0.3 * torch.randn(150, 2, generator=g), eps=0.1)
    very_noisy = wdm(z0, z0 + 1.0 * torch.randn(150, 2, generator=g), eps=0.1)
    same = wdm(z0, z0, eps=0.1)
    assert independent < very_noisy < noisy < same
    assert independent < 0.5 * same


def test_wdm_matches_pot_on_the_same_samples():
    ot = pytest.importorskip("ot")
    g = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(40, 3, generator=g), torch.randn(40, 2, generator=g)
    z1 = z1 + z0[:, :2]
    u = (z0 / z0.norm(dim=1, keepdim=True)).double()
    v = (z1 / z1.norm(dim=1, keepdim=True)).double()
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(4))
    joint, product = torch.cat([u, v], 1).numpy(), torch.cat([u, v[perm]], 1).numpy()
    cost = np.sqrt(((joint[:, None, :] - product[None, :, :]) ** 2).sum(-1))
    weights = np.full(40, 1 / 40)
    plan = ot.sinkhorn(weights, weights, cost, reg=0.2, method="sinkhorn_log", numItermax=5000, stopThr=1e-9)
    assert wdm(z0, z1, eps=0.2, seed=4, max_iter=2000) == pytest.approx(float((plan * cost).sum()), rel=1e-3)


def test_wdm_subsampling():
    g = torch.Generator().manual_seed(2)
    z0, z1 = torch.randn(60, 2, generator=g), torch.randn(60, 2, generator=g)
    assert wdm(z0, z1, eps=0.1, max_samples=60) == wdm(z0, z1, eps=0.1)
    assert wdm(z0, z0, eps=0.1, max_samples=30) > wdm(z0, z1, eps=0.1, max_samples=30)
    with pytest.raises(ValueError, match="max_samples"):
        wdm(z0, z1, max_samples=1)


def test_wdm_bad_input():
    with pytest.raises(ValueError, match="z0, z1"):
        wdm(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match="z0"):
        wdm(torch.randn(5), torch.randn(5, 2))
