"""SinkhornTransport and UnbalancedSinkhornTransport against POT's ot.da estimators on the same data (float64):
couplings, transported source points (fitted and new), inverse transport, propagated labels."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import otalign
from otalign.adapt import SinkhornTransport, UnbalancedSinkhornTransport

ot = pytest.importorskip("ot")

PARITY = 1e-6  # the claim: POT's results to 1e-6 in float64
TIGHT = dict(max_iter=100_000)  # both sides run to their tolerance


def close(ours, theirs, atol=PARITY):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=0, atol=atol)


def all_outputs(est, d, labels=True):
    out = {
        "coupling": est.coupling_,
        "transform": est.transform(Xs=d.Xs) if _is_pot(est) else est.transform(d.Xs),
        "transform_new": est.transform(Xs=d.Xs_new) if _is_pot(est) else est.transform(d.Xs_new),
        "inverse": est.inverse_transform(Xt=d.Xt) if _is_pot(est) else est.inverse_transform(d.Xt),
        "inverse_new": est.inverse_transform(Xt=d.Xt_new) if _is_pot(est) else est.inverse_transform(d.Xt_new),
    }
    if labels:
        out["labels"] = est.transform_labels(d.ys)
        out["inverse_labels"] = est.inverse_transform_labels(d.yt)
    return out


def _is_pot(est) -> bool:
    return type(est).__module__.startswith("ot.")


def assert_same(ours, theirs, atol=PARITY):
    for key in theirs:
        close(ours[key], theirs[key], atol)


@pytest.mark.parametrize("out_of_sample_map", ["continuous", "ferradans"])
@pytest.mark.parametrize("eps, norm", [(1.0, None), (0.1, "max"), (0.05, "median"), (0.5, "log")])
def test_sinkhorn_defaults_match_pot(domains, eps, norm, out_of_sample_map):
    """Default max_iter and tol on both sides: every output within 1e-6."""
    pot = ot.da.SinkhornTransport(reg_e=eps, norm=norm, out_of_sample_map=out_of_sample_map)
    ours = SinkhornTransport(eps=eps, norm=norm, out_of_sample_map=out_of_sample_map)
    assert_same(all_outputs(ours.fit(domains.Xs, Xt=domains.Xt), domains),
                all_outputs(pot.fit(Xs=domains.Xs, Xt=domains.Xt), domains))


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
def test_sinkhorn_converged_matches_pot_tightly(domains, metric):
    """Both solved to near machine precision agree to 1e-10: the remaining 1e-7 gaps above are stopping rules."""
    pot = ot.da.SinkhornTransport(reg_e=0.2, norm="max", metric=metric, tol=1e-15, **TIGHT)
    ours = SinkhornTransport(eps=0.2, norm="max", metric=metric, tol=1e-14, **TIGHT)
    assert_same(all_outputs(ours.fit(domains.Xs, Xt=domains.Xt), domains),
                all_outputs(pot.fit(Xs=domains.Xs, Xt=domains.Xt), domains), atol=1e-10)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # POT's -inf / reg with limit_max=inf
@pytest.mark.parametrize("limit_max", [math.inf, 3.0])
def test_semi_supervised_label_cost_matches_pot(domains, limit_max):
    yt = domains.yt.copy()
    yt[::2] = -1  # half the target unlabelled
    ys = domains.ys.copy()
    ys[:5] = -1
    pot = ot.da.SinkhornTransport(reg_e=0.2, norm="max", limit_max=limit_max)
    pot.fit(Xs=domains.Xs, ys=ys, Xt=domains.Xt, yt=yt)
    ours = SinkhornTransport(eps=0.2, norm="max", limit_max=limit_max).fit(domains.Xs, ys, domains.Xt, yt)
    assert_same(all_outputs(ours, domains, labels=False), all_outputs(pot, domains, labels=False))
    labelled = (ys[:, None] != yt[None, :]) & (ys[:, None] != -1) & (yt[None, :] != -1)
    if math.isinf(limit_max):
        assert (ours.coupling_[labelled] == 0).all() and np.isinf(ours.cost_[labelled]).all()
    else:
        np.testing.assert_allclose(ours.cost_[labelled].min(), limit_max, rtol=1e-12)  # limit_max * max(C), max = 1


def test_refit_does_not_compound_limit_max(domains):
    """POT multiplies its limit_max attribute in place on every fit; here refitting gives the same plan."""
    est = SinkhornTransport(eps=0.2, norm="max", limit_max=3.0)
    first = est.fit(domains.Xs, domains.ys, domains.Xt, domains.yt).coupling_
    np.testing.assert_array_equal(est.fit(domains.Xs, domains.ys, domains.Xt, domains.yt).coupling_, first)
    assert est.limit_max == 3.0


def test_unbalanced_semi_supervised_matches_pot(domains):
    """POT's UnbalancedSinkhornTransport defaults to limit_max=10; so does otalign's."""
    yt = domains.yt.copy()
    yt[1::2] = -1
    pot = ot.da.UnbalancedSinkhornTransport(reg_e=0.3, reg_m=0.5, norm="max", tol=1e-14, **TIGHT)
    ours = UnbalancedSinkhornTransport(eps=0.3, rho=0.5, norm="max", tol=1e-12)
    assert_same(all_outputs(ours.fit(domains.Xs, domains.ys, domains.Xt, yt), domains, labels=False),
                all_outputs(pot.fit(Xs=domains.Xs, ys=domains.ys, Xt=domains.Xt, yt=yt), domains, labels=False))


def test_read_only_arrays_are_accepted(domains):
    Xs = domains.Xs.copy()
    Xs.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy would warn about a non-writable array
        SinkhornTransport(norm="max").fit(Xs, Xt=domains.Xt)


def test_unbalanced_pot_default_iterates_exactly(domains):
    """POT's default stops after 10 scaling iterations; otalign's plain Sinkhorn with tol=0 runs the same ones."""
    pot = ot.da.UnbalancedSinkhornTransport(reg_e=0.5, reg_m=1.0, norm="max").fit(Xs=domains.Xs, Xt=domains.Xt)
    ours = UnbalancedSinkhornTransport(eps=0.5, rho=1.0, norm="max", max_iter=10, tol=0, solver="sinkhorn")
    assert_same(all_outputs(ours.fit(domains.Xs, Xt=domains.Xt), domains), all_outputs(pot, domains), atol=1e-12)


@pytest.mark.parametrize("rho", [0.1, 1.0])
def test_unbalanced_converged_matches_pot(domains, rho):
    pot = ot.da.UnbalancedSinkhornTransport(reg_e=0.3, reg_m=rho, norm="max", tol=1e-14, **TIGHT)
    ours = UnbalancedSinkhornTransport(eps=0.3, rho=rho, norm="max", tol=1e-12)
    assert_same(all_outputs(ours.fit(domains.Xs, Xt=domains.Xt), domains),
                all_outputs(pot.fit(Xs=domains.Xs, Xt=domains.Xt), domains))
    assert ours.converged_ and ours.coupling_.sum() < 1


def test_continuous_map_is_barycentric_on_fitted_points(domains):
    est = SinkhornTransport(eps=0.1, norm="max", tol=1e-13).fit(domains.Xs, Xt=domains.Xt)
    P = est.coupling_
    close(est.transform(domains.Xs), P @ domains.Xt / P.sum(1, keepdims=True), atol=1e-12)
    close(est.inverse_transform(domains.Xt), P.T @ domains.Xs / P.sum(0)[:, None], atol=1e-12)


def test_labels_are_column_normalised_class_mass(domains):
    est = SinkhornTransport(eps=0.1, norm="max").fit(domains.Xs, Xt=domains.Xt)
    scores = est.transform_labels(domains.ys + 5)  # labels need not start at 0
    P = est.coupling_
    expected = np.stack([P[domains.ys == c].sum(0) for c in np.unique(domains.ys)], 1) / P.sum(0)[:, None]
    close(scores, expected, atol=1e-14)
    close(scores.sum(1), np.ones(len(domains.yt)), atol=1e-12)


def test_tensor_in_tensor_out_same_as_numpy(domains):
    est = SinkhornTransport(eps=0.1, norm="max")
    numpy_out = est.fit(domains.Xs, Xt=domains.Xt).transform(domains.Xs_new)
    Xs, Xt = torch.from_numpy(domains.Xs), torch.from_numpy(domains.Xt)
    est.fit(Xs, torch.from_numpy(domains.ys), Xt)
    out = est.transform(torch.from_numpy(domains.Xs_new))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert isinstance(est.coupling_, torch.Tensor) and isinstance(est.transform_labels(domains.ys), np.ndarray)
    close(out.numpy(), numpy_out, atol=1e-12)


def test_float32_input_stays_float32(domains):
    est = SinkhornTransport(eps=0.1, norm="max", tol=1e-5)  # float32 cannot meet the default tol=1e-8
    est.fit(domains.Xs.astype(np.float32), Xt=domains.Xt.astype(np.float32))
    assert est.coupling_.dtype == np.float32 and est.transform(domains.Xs_new.astype(np.float32)).dtype == np.float32
    reference = SinkhornTransport(eps=0.1, norm="max").fit(domains.Xs, Xt=domains.Xt)
    close(est.coupling_, reference.coupling_, atol=1e-6)


def test_unconverged_fit_warns(domains):
    with pytest.warns(otalign.ConvergenceWarning):
        est = SinkhornTransport(eps=0.01, norm="max", max_iter=3).fit(domains.Xs, Xt=domains.Xt)
    assert not est.converged_


def test_fit_transform_equals_fit_then_transform(domains):
    a = SinkhornTransport(eps=0.2, norm="max").fit_transform(domains.Xs, Xt=domains.Xt)
    b = SinkhornTransport(eps=0.2, norm="max").fit(domains.Xs, Xt=domains.Xt).transform(domains.Xs)
    np.testing.assert_array_equal(a, b)


def test_solvers_agree(domains):
    """The transport goes through otalign.solve: another solver reaches the same plan."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = SinkhornTransport(eps=0.1, norm="max", tol=1e-12).fit(domains.Xs, Xt=domains.Xt).coupling_
        b = SinkhornTransport(eps=0.1, norm="max", tol=1e-12, solver="pot").fit(domains.Xs, Xt=domains.Xt).coupling_
    close(a, b, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensors_stay_on_cuda(domains):
    Xs, Xt = torch.from_numpy(domains.Xs).cuda(), torch.from_numpy(domains.Xt).cuda()
    est = SinkhornTransport(eps=0.1, norm="max").fit(Xs, Xt=Xt)
    out = est.transform(torch.from_numpy(domains.Xs_new).cuda())
    assert out.is_cuda and est.coupling_.is_cuda
    cpu = SinkhornTransport(eps=0.1, norm="max").fit(domains.Xs, Xt=domains.Xt)
    close(out.cpu().numpy(), cpu.transform(domains.Xs_new), atol=1e-10)
