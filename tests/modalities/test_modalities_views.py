"""Tests of otalign.modalities.views: the shared two-view maker draws the first view, then the second, from one
generator (the stream every modality's TwoViews had before it was shared), and serves as the trainer's view maker."""

import pytest
import torch

from otalign.modalities import text as X
from otalign.modalities import timeseries as S
from otalign.modalities.views import TwoViews
from otalign.training import PairViews

TEXTS = ["the quick brown fox jumps over the lazy dog", "a b c d e f g", "time flies like an arrow"]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def series():
    return torch.randn(8, 6, 60, generator=gen(7))


def test_the_modalities_share_one_implementation():
    assert S.TwoViews is TwoViews and X.TwoViews is TwoViews


@pytest.mark.parametrize("second", [None, "frequency_mask"])
def test_series_views_are_first_then_second_from_one_generator(second):
    x = series()
    first = S.sensor_transform()
    other = first if second is None else S.Compose([S.sensor_transform(), S.FrequencyPerturbation("mask")])
    v0, v1 = TwoViews(first, None if second is None else other)(x, gen(3))
    g = gen(3)
    assert torch.equal(v0, first(x, generator=g)) and torch.equal(v1, other(x, generator=g))
    assert not torch.equal(v0, v1)


def test_text_views_are_first_then_second_from_one_generator():
    first, second = X.TextCompose([X.RandomDeletion(0.2), X.RandomSwap(1)]), X.RandomSwap(2)
    v0, v1 = TwoViews(first, second)(TEXTS, generator=gen(5))
    g = gen(5)
    assert v0 == first(TEXTS, generator=g) and v1 == second(TEXTS, generator=g)
    w0, w1 = TwoViews(X.RandomDeletion(0.3))(TEXTS, gen(0))
    assert (w0, w1) == TwoViews(X.RandomDeletion(0.3))(TEXTS, gen(0)) and w0 != w1


def test_without_a_generator_the_global_rng_decides():
    views = TwoViews(S.TimeWarp(0.3))
    x = series()
    torch.manual_seed(11)
    v0, v1 = views(x)
    torch.manual_seed(11)
    w0, w1 = views(x)
    assert torch.equal(v0, w0) and torch.equal(v1, w1) and not torch.equal(v0, v1)


def test_a_trainer_view_maker_that_corrupts_nothing():
    views = TwoViews(S.Jitter(0.0), S.Jitter(0.5))
    assert isinstance(views, PairViews) and not views.corrupts
    x = series()
    v0, v1 = views(x, gen(0))  # the trainer's call: views(x, generator)
    assert torch.equal(v0, x) and not torch.equal(v1, x)
    assert repr(views).startswith("TwoViews(first=Jitter(sigma=0)")


def test_bad_transforms_name_the_argument():
    with pytest.raises(TypeError, match="first"):
        TwoViews(3)
    with pytest.raises(TypeError, match="second"):
        TwoViews(S.Jitter(), "jitter")
