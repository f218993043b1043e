"""Input conversion of the adaptation estimators: NumPy or torch in, the caller's container and dtype out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otalign.adapt.arrays import as_labels, as_samples, one_hot


def test_containers_round_trip():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    t, container = as_samples("X", x)
    assert t.dtype == torch.float32 and isinstance(container.restore(t.double()), np.ndarray)
    assert container.restore(t.double()).dtype == np.float32  # floating results take the input's dtype
    t, container = as_samples("X", torch.from_numpy(x).half())
    assert t.dtype == torch.float32 and container.restore(t).dtype == torch.float16


@pytest.mark.parametrize("bad, error, match", [
    (np.array([["a", "b"]]), TypeError, "X: expected a numeric array"),
    (np.ones((2, 2), dtype=bool), TypeError, "X: expected real-valued samples"),
    (torch.ones(2, 2, dtype=torch.complex64), TypeError, "X: expected real-valued samples"),
    (np.ones((2, 2, 2)), ValueError, r"X: expected samples of shape \(n_samples, n_features\)"),
])
def test_bad_samples(bad, error, match):
    with pytest.raises(error, match=match):
        as_samples("X", bad)


def test_labels():
    labels, container = as_labels("y", np.array([2.0, 0.0, 2.0]), 3, torch.device("cpu"))
    assert labels.dtype == torch.int64 and labels.tolist() == [2, 0, 2] and container.numpy
    with pytest.raises(ValueError, match="y: expected integer class labels"):
        as_labels("y", np.array([np.nan, 0.0, 1.0]), 3, torch.device("cpu"))
    with pytest.raises(TypeError, match="y: expected integer class labels, got dtype torch.bool"):
        as_labels("y", torch.tensor([True, False, True]), 3, torch.device("cpu"))


def test_one_hot_uses_sorted_distinct_labels():
    classes, masks = one_hot(torch.tensor([5, -1, 5, 2]), torch.float64)
    assert classes.tolist() == [-1, 2, 5]
    assert masks.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]]
