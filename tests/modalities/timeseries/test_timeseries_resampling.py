"""Tests of otalign.modalities.timeseries.resampling: resample_length against closed forms (cosine series), the
low-pass on down-sampling, errors; and the time-grid helpers."""

import math

import pytest
import torch

from otalign.modalities.timeseries import resampling as R


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def centres(t, length):
    """Input times of the output samples of a resampling from t to length samples (cell centres)."""
    return (torch.arange(length, dtype=torch.float64) + 0.5) * t / length - 0.5


def dct_cosine(k, t, positions=None, dtype=torch.float64):
    """cos(pi k (p + 1/2) / t) at time positions p (default 0 .. t - 1): the k-th cosine basis series."""
    p = torch.arange(t, dtype=dtype) if positions is None else positions
    return torch.cos(math.pi * k * (p + 0.5) / t)


def centres(t, length):
    """Input times of the output samples of a resampling from t to length samples (cell centres)."""
    return (torch.arange(length, dtype=torch.float64) + 0.5) * t / length - 0.5


@pytest.mark.parametrize("t,length", [(50, 80), (80, 50), (64, 31), (33, 100)])
def test_resample_length_matches_closed_form(t, length):
    k = min(t, length) // 3
    x = dct_cosine(k, t).expand(2, 3, t)
    out = R.resample_length(x, length)
    expected = dct_cosine(k, t, positions=centres(t, length))
    assert out.shape == (2, 3, length) and out.dtype == x.dtype
    assert torch.allclose(out, expected.expand_as(out), atol=1e-9)


def test_resample_length_removes_content_above_the_new_nyquist():
    t = 100
    x = dct_cosine(3, t) + dct_cosine(80, t)
    out = R.resample_length(x, 50)
    expected = dct_cosine(3, t, positions=centres(t, 50))
    assert torch.allclose(out, expected, atol=1e-9)


def test_resample_length_float32_and_errors():
    x = randn(2, 40)
    assert R.resample_length(x, 40) is not x and torch.equal(R.resample_length(x, 40), x)
    assert R.resample_length(x, 20).dtype == torch.float32
    with pytest.raises(ValueError, match="length"):
        R.resample_length(x, 0)


def test_smooth_curves_pass_through_the_knots():
    knots = torch.randn(3, 2, 5, generator=gen(0), dtype=torch.float64)
    length = 4 * (5 - 1) + 1  # knots at every 4th sample
    curves = R.smooth_curves(knots, length)
    assert curves.shape == (3, 2, length)
    assert torch.allclose(curves[..., ::4], knots, atol=1e-12)
    flat = R.smooth_curves(torch.full((2, 6), 1.5, dtype=torch.float64), 50)
    assert torch.allclose(flat, torch.full_like(flat, 1.5))


def test_sample_linear_reads_samples_and_interpolates_between():
    x = torch.randn(2, 3, 10, generator=gen(1), dtype=torch.float64)
    whole = torch.arange(10, dtype=torch.float64).expand(2, 10)
    assert torch.allclose(R.sample_linear(x, whole), x, rtol=0, atol=1e-12)
    halves = (torch.arange(9, dtype=torch.float64) + 0.5).expand(2, 9)
    assert torch.allclose(R.sample_linear(x, halves), (x[..., 1:] + x[..., :-1]) / 2)
    clipped = R.sample_linear(x, torch.tensor([[-3.0, 12.0]], dtype=torch.float64).expand(2, 2))
    assert torch.allclose(clipped, x[..., [0, 9]], rtol=0, atol=1e-12)


def test_work_dtype_is_float32_at_least():
    assert R.work_dtype(torch.float16) == torch.float32 and R.work_dtype(torch.bfloat16) == torch.float32
    assert R.work_dtype(torch.float64) == torch.float64
