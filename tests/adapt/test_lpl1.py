"""Class-regularised OT (lp-l1 by majorisation-minimisation) against POT's sinkhorn_lpl1_mm and
ot.da.SinkhornLpl1Transport (float64), and what the penalty does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import otalign
from otalign.adapt import SinkhornLpl1Transport, SinkhornTransport, sinkhorn_lpl1

ot = pytest.importorskip("ot")


def class_spread(P: np.ndarray, ys: np.ndarray) -> float:
    """The penalty's quantity: sum over target columns and source classes of sqrt(class mass)."""
    return float(sum(np.sqrt(P[ys == c].sum(0)).sum() for c in np.unique(ys)))


def test_mm_matches_pot_function(domains):
    C = ot.dist(domains.Xs, domains.Xt)
    C /= C.max()
    a, b = ot.unif(len(domains.Xs)), ot.unif(len(domains.Xt))
    pot = ot.da.sinkhorn_lpl1_mm(a, domains.ys, b, C, reg=0.5, eta=0.5, numItermax=4, numInnerItermax=5000,
                                 stopInnerThr=1e-14)
    t = torch.from_numpy
    ours = sinkhorn_lpl1(t(C), t(a), t(b), t(domains.ys), eps=0.5, eta=0.5, max_iter=4, max_inner_iter=5000,
                         tol=1e-13)
    np.testing.assert_allclose(ours.matrix.numpy(), pot, rtol=0, atol=1e-10)


@pytest.mark.parametrize("eps, reg_cl, norm", [(1.0, 0.5, "max"), (1.0, 0.1, "median"), (2.0, 1.0, "median"),
                                               pytest.param(0.5, 0.5, "max", marks=pytest.mark.slow)])
def test_estimator_matches_pot(small_domains, eps, reg_cl, norm):
    kw = dict(norm=norm, max_inner_iter=5000)
    d = small_domains
    pot = ot.da.SinkhornLpl1Transport(reg_e=eps, reg_cl=reg_cl, tol=1e-12, **kw).fit(Xs=d.Xs, ys=d.ys, Xt=d.Xt)
    ours = SinkhornLpl1Transport(eps=eps, reg_cl=reg_cl, tol=1e-11, **kw).fit(d.Xs, d.ys, d.Xt)
    pairs = [
        (ours.coupling_, pot.coupling_),
        (ours.transform(d.Xs), pot.transform(Xs=d.Xs)),
        (ours.transform(d.Xs_new), pot.transform(Xs=d.Xs_new)),
        (ours.inverse_transform(d.Xt_new), pot.inverse_transform(Xt=d.Xt_new)),
        (ours.transform_labels(d.ys), pot.transform_labels(d.ys)),
        (ours.inverse_transform_labels(d.yt), pot.inverse_transform_labels(d.yt)),
    ]
    for mine, theirs in pairs:
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


def test_pot_defaults_agree_to_1e6_when_inner_solves_converge(domains):
    pot = ot.da.SinkhornLpl1Transport(norm="max").fit(Xs=domains.Xs, ys=domains.ys, Xt=domains.Xt)
    ours = SinkhornLpl1Transport(norm="max").fit(domains.Xs, domains.ys, domains.Xt)
    np.testing.assert_allclose(ours.coupling_, pot.coupling_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.transform(domains.Xs_new), pot.transform(Xs=domains.Xs_new), rtol=0, atol=1e-6)


def test_penalty_concentrates_classes_and_keeps_marginals(small_domains):
    d = small_domains
    plain = SinkhornTransport(eps=0.2, norm="max").fit(d.Xs, Xt=d.Xt).coupling_
    grouped = SinkhornLpl1Transport(eps=0.2, reg_cl=1.0, norm="max", max_inner_iter=1000).fit(
        d.Xs, d.ys, d.Xt).coupling_
    assert class_spread(grouped, d.ys) < class_spread(plain, d.ys)
    np.testing.assert_allclose(grouped.sum(1), 1 / len(d.Xs), atol=1e-8)
    np.testing.assert_allclose(grouped.sum(0), 1 / len(d.Xt), atol=1e-8)


def test_zero_weight_is_plain_sinkhorn(small_domains):
    d = small_domains
    plain = SinkhornTransport(eps=0.2, norm="max", tol=1e-12).fit(d.Xs, Xt=d.Xt).coupling_
    zero = SinkhornLpl1Transport(eps=0.2, reg_cl=0.0, norm="max", tol=1e-12, max_inner_iter=1000).fit(
        d.Xs, d.ys, d.Xt).coupling_
    np.testing.assert_allclose(zero, plain, rtol=0, atol=1e-12)


def test_one_warning_for_unconverged_inner_solves(domains):
    with pytest.warns(otalign.ConvergenceWarning, match="inner solves") as record:
        estimator = SinkhornLpl1Transport(eps=0.05, reg_cl=1.0, norm="max", max_inner_iter=5)
        estimator.fit(domains.Xs, domains.ys, domains.Xt)
    assert len([w for w in record if issubclass(w.category, otalign.ConvergenceWarning)]) == 1


def test_needs_source_labels(domains):
    with pytest.raises(ValueError, match="ys: .*needs the source labels"):
        SinkhornLpl1Transport().fit(domains.Xs, Xt=domains.Xt)


def test_bad_parameters():
    with pytest.raises(ValueError, match="reg_cl"):
        SinkhornLpl1Transport(reg_cl=-1.0)
    with pytest.raises(ValueError, match="max_inner_iter"):
        SinkhornLpl1Transport(max_inner_iter=0)
