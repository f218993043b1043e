"""Target plans against plain loop constructions over the view-blocked layout (row ``v * N + k`` is sample ``k``
in view ``v``)."""

from __future__ import annotations

import pytest
import torch

from otalign import targets


def loop_target(N: int, n_views: int, weight) -> torch.Tensor:
    """``P[i, j] = weight(sample_i, sample_j)`` for ``i != j``, 0 on the diagonal."""
    size = N * n_views
    out = torch.zeros(size, size)
    for i in range(size):
        for j in range(size):
            if i != j:
                out[i, j] = weight(i % N, j % N)
    return out


@pytest.mark.parametrize("n_views", [2, 3])
def test_paired(n_views):
    expected = loop_target(5, n_views, lambda k, l: float(k == l))
    torch.testing.assert_close(targets.paired(5, n_views), expected, rtol=0, atol=0)


def test_paired_is_a_permutation_for_two_views():
    P = targets.paired(6)
    assert torch.equal(P.sum(0), torch.ones(12)) and torch.equal(P.sum(1), torch.ones(12))
    assert torch.equal(P, P.T)


def test_from_labels():
    labels = torch.tensor([0, 2, 0, 1, 2, 2])
    expected = loop_target(6, 2, lambda k, l: float(labels[k] == labels[l]))
    torch.testing.assert_close(targets.from_labels(labels), expected, rtol=0, atol=0)


def test_domain_prior():
    domains = torch.tensor([0, 1, 1, 0, 2])
    alpha, beta = 0.5, 0.1

    def weight(k, l):
        pair = 1.0 if k == l else 0.0
        return pair + (alpha if domains[k] == domains[l] else beta)

    expected = loop_target(5, 2, weight)
    torch.testing.assert_close(targets.domain_prior(domains, alpha, beta), expected, rtol=0, atol=1e-7)


def test_hierarchical():
    fine = torch.tensor([0, 1, 2, 3, 4, 5])
    coarse = torch.tensor([0, 0, 1, 1, 1, 0])
    instance = torch.arange(6)
    weights = [1.0, 0.5, 0.25]

    def weight(k, l):
        return sum(w * float(level[k] == level[l]) for level, w in zip((instance, fine, coarse), weights))

    expected = loop_target(6, 2, weight)
    torch.testing.assert_close(targets.hierarchical([instance, fine, coarse], weights), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("axis", [0, 1])
def test_weighted(axis):
    base = targets.from_labels(torch.tensor([0, 1, 0, 1]))
    quality = torch.tensor([1.0, 0.5, 0.0, 2.0, 1.0, 1.0, 0.25, 3.0])
    out = targets.weighted(base, quality, axis=axis)
    expected = torch.zeros_like(base)
    for i in range(8):
        for j in range(8):
            expected[i, j] = base[i, j] * quality[i if axis == 1 else j]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_dtype_is_honoured():
    assert targets.paired(3, dtype=torch.float64).dtype == torch.float64
    assert targets.from_labels(torch.tensor([1, 2]), dtype=torch.float64).dtype == torch.float64


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="n_views"):
        targets.paired(4, n_views=1)
    with pytest.raises(ValueError, match="^labels:"):
        targets.from_labels(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha"):
        targets.domain_prior(torch.tensor([0, 1]), alpha=-1.0, beta=0.0)
    with pytest.raises(ValueError, match="^levels, weights:"):
        targets.hierarchical([torch.arange(3)], [1.0, 2.0])
    with pytest.raises(ValueError, match="^weights:"):
        targets.hierarchical([torch.arange(3)], [-1.0])
    with pytest.raises(ValueError, match="^levels:"):
        targets.hierarchical([torch.arange(3), torch.arange(4)], [1.0, 1.0])
    with pytest.raises(ValueError, match="^view_quality:"):
        targets.weighted(targets.paired(2), torch.ones(3))
    with pytest.raises(ValueError, match="^view_quality:"):
        targets.weighted(targets.paired(2), -torch.ones(4))
    with pytest.raises(ValueError, match="^target:"):
        targets.check_target(-targets.paired(2), (4, 4))
