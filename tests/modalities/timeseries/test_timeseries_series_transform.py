"""Tests of otalign.modalities.timeseries.series_transform: the base class's shapes, dtypes and input checks, and
the combinators RandomApply and Compose."""

import pytest
import torch

from otalign.modalities.timeseries import augmentations as A
from otalign.modalities.timeseries import series_transform as B


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def test_random_apply_applies_per_series():
    x = torch.zeros(400, 1, 8)
    out = B.RandomApply(A.Jitter(1.0), p=0.25)(x, generator=gen(0))
    applied = (out != 0).any(-1).flatten().float()
    assert 0.18 < applied.mean().item() < 0.32
    assert torch.equal(B.RandomApply(A.Jitter(1.0), p=0.0)(x, generator=gen(0)), x)


def test_compose_equals_sequential_application():
    x = randn(5, 2, 40)
    first, second = A.Scaling(0.2), A.TimeWarp(0.3)
    g = gen(0)
    expected = second(first(x, generator=g), generator=g)
    assert torch.equal(B.Compose([first, second])(x, generator=gen(0)), expected)




class AddOne(B.SeriesTransform):
    """A deterministic transform that records the batch it was applied to."""

    def apply(self, x, generator):
        self.seen = (x.shape, x.dtype)
        return x + 1


@pytest.mark.parametrize("dtype,work", [(torch.float16, torch.float32), (torch.float32, torch.float32),
                                        (torch.float64, torch.float64)])
def test_base_batches_single_series_and_works_in_float32_at_least(dtype, work):
    op = AddOne()
    x = torch.zeros(3, 5, dtype=dtype)
    out = op(x)
    assert op.seen == ((1, 3, 5), work)
    assert out.shape == (3, 5) and out.dtype == dtype and torch.equal(out, x + 1)
    assert op(torch.zeros(2, 3, 5, dtype=dtype)).shape == (2, 3, 5) and op.seen[0] == (2, 3, 5)


def test_base_rejects_bad_series():
    with pytest.raises(ValueError, match="x"):
        AddOne()(torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="x"):
        AddOne()(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="x"):
        AddOne()([[0.0, 1.0]])


def test_combinators_reject_non_transforms():
    with pytest.raises(TypeError, match="transforms"):
        B.Compose([lambda x: x])
    with pytest.raises(TypeError, match="transform"):
        B.RandomApply(lambda x: x)
    with pytest.raises(ValueError, match="p"):
        B.RandomApply(AddOne(), p=1.5)


def test_parameter_checks_name_the_argument():
    assert B.check_range("scale", [0.2, 0.5], 0.0, 1.0) == (0.2, 0.5)
    for bad in ([0.5, 0.2], [0.1, 1.5], [0.1]):
        with pytest.raises(ValueError, match="scale"):
            B.check_range("scale", bad, 0.0, 1.0)
    assert B.check_nonneg("sigma", 0) == 0.0
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            B.check_nonneg("sigma", bad)


def test_draws_follow_the_generator_and_land_on_the_input():
    like = torch.zeros(1, dtype=torch.float64)
    u = B.draw_rand((4, 3), gen(0), like)
    assert u.dtype == torch.float64 and torch.equal(u, torch.rand(4, 3, generator=gen(0), dtype=torch.float64))
    z = B.draw_randn((5,), gen(1), like)
    assert torch.equal(z, torch.randn(5, generator=gen(1), dtype=torch.float64))
