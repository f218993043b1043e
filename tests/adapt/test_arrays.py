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
    (np.array([["a", "b"]]), TypeError, "X: expected numbers"),
    ([[1.0, 2.0], [3.0]], TypeError, "X: expected .* not a rectangular array"),
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
    with pytest.raises(ValueError, match="y: contains NaN or inf"):
        as_labels("y", np.array([np.nan, 0.0, 1.0]), 3, torch.device("cpu"))
    assert as_labels("y", torch.tensor([True, False, True]), 3, torch.device("cpu"))[0].tolist() == [1, 0, 1]
    assert as_labels("y", ["b", "a", "b"], 3, torch.device("cpu"))[0].tolist() == [1, 0, 1]


def test_one_hot_uses_sorted_distinct_labels():
    classes, masks = one_hot(torch.tensor([5, -1, 5, 2]), torch.float64)
    assert classes.tolist() == [-1, 2, 5]
    assert masks.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_estimators_accept_lists_pandas_and_string_or_boolean_labels():
    """The same fit from NumPy arrays, lists and pandas objects, with integer, string and boolean labels."""
    pd = pytest.importorskip("pandas")
    from otalign.adapt import SinkhornTransport

    gen = np.random.default_rng(0)
    xs, xt = gen.normal(size=(12, 2)), gen.normal(size=(10, 2)) + 1.0
    ys, yt = np.arange(12) % 2, np.arange(10) % 2
    reference = SinkhornTransport(eps=0.5, limit_max=2.0).fit(xs, ys, xt, yt)
    names = np.array(["cat", "dog"])
    inputs = [
        (xs.tolist(), ys.tolist(), xt.tolist(), yt.tolist()),
        (pd.DataFrame(xs, columns=["u", "v"]), pd.Series(ys), pd.DataFrame(xt), pd.Series(yt)),
        (xs, names[ys], xt, names[yt]),                                  # strings, coded alike on both sides
        (xs, pd.Series(names[ys]), xt, list(names[yt])),
        (xs, ys.astype(bool), xt, yt.astype(bool)),
        (xs, ys.astype(float), xt, yt.astype(float)),
        (xs, ys + 0.5, xt, yt + 0.5),                                    # non-integral floats, coded alike
    ]
    for Xs, Ys, Xt, Yt in inputs:
        fitted = SinkhornTransport(eps=0.5, limit_max=2.0).fit(Xs, Ys, Xt, Yt)
        assert isinstance(fitted.coupling_, np.ndarray)
        np.testing.assert_allclose(fitted.coupling_, reference.coupling_, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fitted.transform(Xs), reference.transform(xs), rtol=0, atol=1e-12)
        np.testing.assert_allclose(fitted.transform_labels(Ys), reference.transform_labels(ys), rtol=0, atol=1e-12)
