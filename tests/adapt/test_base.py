"""The estimator interface: clear errors for bad input, scikit-learn parameters, refitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otalign.adapt import NotFittedError, SinkhornLpl1Transport, SinkhornTransport, UnbalancedSinkhornTransport

ESTIMATORS = [SinkhornTransport, UnbalancedSinkhornTransport, SinkhornLpl1Transport]


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan"), float("inf"), "a"])
def test_eps_must_be_positive(cls, eps):
    with pytest.raises((ValueError, TypeError), match="eps"):
        cls(eps=eps)


def test_rho_and_options_checked():
    with pytest.raises(ValueError, match="rho"):
        UnbalancedSinkhornTransport(rho=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        SinkhornTransport(max_iter=0)
    with pytest.raises(ValueError, match="out_of_sample_map"):
        SinkhornTransport(out_of_sample_map="nearest")
    with pytest.raises(ValueError, match="limit_max"):
        SinkhornTransport(limit_max=-1)


@pytest.mark.parametrize("method", ["transform", "inverse_transform", "transform_labels", "inverse_transform_labels"])
def test_not_fitted(method, domains):
    arg = domains.ys if "labels" in method else domains.Xs
    with pytest.raises(NotFittedError, match="SinkhornTransport: not fitted yet; call fit"):
        getattr(SinkhornTransport(), method)(arg)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_feature_dimensions(domains):
    with pytest.raises(ValueError, match=r"Xs, Xt: feature dimensions differ \(3 vs 2\)"):
        SinkhornTransport().fit(domains.Xs, Xt=domains.Xt[:, :2])
    est = SinkhornTransport(norm="max").fit(domains.Xs, Xt=domains.Xt)
    with pytest.raises(ValueError, match=r"Xs: expected 3 features \(as in fit\), got 4"):
        est.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"Xt: expected 3 features"):
        est.inverse_transform(np.zeros((2, 1)))


@pytest.mark.parametrize("bad, name", [(np.nan, "Xs: contains NaN"), (np.inf, "Xs: contains inf")])
def test_nan_and_inf(domains, bad, name):
    Xs = domains.Xs.copy()
    Xs[3, 1] = bad
    with pytest.raises(ValueError, match=name):
        SinkhornTransport().fit(Xs, Xt=domains.Xt)
    Xt = torch.from_numpy(domains.Xt).clone()
    Xt[0, 0] = bad
    with pytest.raises(ValueError, match=name.replace("Xs", "Xt")):
        SinkhornTransport().fit(domains.Xs, Xt=Xt)


def test_shapes_and_types(domains):
    with pytest.raises(ValueError, match=r"Xs: expected samples of shape \(n_samples, n_features\)"):
        SinkhornTransport().fit(domains.Xs[:, 0], Xt=domains.Xt)
    with pytest.raises(ValueError, match="Xt: is empty"):
        SinkhornTransport().fit(domains.Xs, Xt=domains.Xt[:0])
    with pytest.raises(TypeError, match="Xs: expected a torch.Tensor, a NumPy array, .* got str"):
        SinkhornTransport().fit("samples", Xt=domains.Xt)
    with pytest.raises(ValueError, match="Xt: fit needs the target samples"):
        SinkhornTransport().fit(domains.Xs)


def test_label_lengths_and_values(domains):
    with pytest.raises(ValueError, match=r"ys: expected one label per sample, shape \(40,\), got shape \(39,\)"):
        SinkhornTransport().fit(domains.Xs, domains.ys[:-1], domains.Xt)
    with pytest.raises(ValueError, match=r"yt: expected one label per sample, shape \(30,\)"):
        SinkhornTransport().fit(domains.Xs, domains.ys, domains.Xt, domains.yt[:3])
    with pytest.raises(ValueError, match="ys: contains NaN or inf"):
        SinkhornTransport().fit(domains.Xs, domains.ys + np.nan, domains.Xt)
    est = SinkhornTransport(norm="max").fit(domains.Xs, Xt=domains.Xt)
    with pytest.raises(ValueError, match=r"ys: expected one label per sample, shape \(40,\)"):
        est.transform_labels(domains.yt)
    with pytest.raises(ValueError, match=r"yt: expected one label per sample, shape \(30,\)"):
        est.inverse_transform_labels(domains.ys)


def test_integer_samples_are_read_as_float64(domains):
    est = SinkhornTransport(norm="max").fit(domains.Xs.round().astype(np.int64), Xt=domains.Xt.round().astype(np.int32))
    assert est.coupling_.dtype == np.float64
    ref = SinkhornTransport(norm="max").fit(domains.Xs.round(), Xt=domains.Xt.round())
    np.testing.assert_array_equal(est.coupling_, ref.coupling_)


def test_get_set_params_and_sklearn_clone(domains):
    est = SinkhornTransport(eps=0.3, norm="max")
    assert est.get_params()["eps"] == 0.3 and est.get_params()["norm"] == "max"
    assert est.set_params(eps=0.5) is est and est.eps == 0.5
    with pytest.raises(ValueError, match="alpha: not a parameter of SinkhornTransport"):
        est.set_params(alpha=1)
    with pytest.raises(ValueError, match="eps"):
        est.set_params(eps=0)
    assert est.eps == 0.5  # a rejected value is not kept
    sklearn_base = pytest.importorskip("sklearn.base")
    copy = sklearn_base.clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "coupling_")
    assert "SinkhornTransport(eps=0.5" in repr(est)


def test_refit_on_other_data_replaces_everything(domains):
    est = SinkhornTransport(norm="max").fit(domains.Xs, Xt=domains.Xt)
    est.fit(domains.Xs[:10], Xt=domains.Xt[:8])
    assert est.coupling_.shape == (10, 8) and est.transform(domains.Xs_new).shape == (7, 3)
