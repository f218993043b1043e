"""Tests of otalign.modalities.timeseries.augmentations: shape, dtype and seeding of every op (the combinators of
series_transform included), and that each op does what it says (checked against closed forms or plain
re-computations)."""

import math

import pytest
import torch

from otalign.modalities.timeseries import augmentations as A
from otalign.modalities.timeseries import series_transform as B


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def ramp(b, c, t, dtype=torch.float64):
    """Series whose value is the time index (channel c scaled by c + 1)."""
    scale = torch.arange(1, c + 1, dtype=dtype).view(1, c, 1)
    return (torch.arange(t, dtype=dtype).view(1, 1, t) * scale).expand(b, c, t).contiguous()


def dct_cosine(k, t, positions=None, dtype=torch.float64):
    """cos(pi k (p + 1/2) / t) at time positions p (default 0 .. t - 1): the k-th cosine basis series."""
    p = torch.arange(t, dtype=dtype) if positions is None else positions
    return torch.cos(math.pi * k * (p + 0.5) / t)


OPS = {
    "jitter": lambda: A.Jitter(0.05),
    "scaling": lambda: A.Scaling(0.1),
    "scaling_series": lambda: A.Scaling(0.1, per_channel=False),
    "permutation": lambda: A.Permutation(5),
    "magnitude_warp": lambda: A.MagnitudeWarp(0.2),
    "time_warp": lambda: A.TimeWarp(0.2),
    "crop": lambda: A.RandomCrop((0.5, 0.9)),
    "freq_jitter": lambda: A.FrequencyPerturbation("jitter"),
    "freq_mask": lambda: A.FrequencyPerturbation("mask"),
    "resample": lambda: A.RandomResample((0.3, 0.8)),
    "random_apply": lambda: B.RandomApply(A.Jitter(0.1), p=0.5),
    "compose": lambda: B.Compose([A.Scaling(), A.TimeWarp(), A.Jitter()]),
    "recipe": lambda: A.sensor_transform(),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(OPS))
def test_shape_dtype_and_seeding(name, dtype):
    op = OPS[name]()
    x = randn(6, 3, 64, dtype=dtype)
    state = torch.get_rng_state()
    a = op(x, generator=gen(0))
    b = op(x, generator=gen(0))
    c = op(x, generator=gen(1))
    assert torch.equal(torch.get_rng_state(), state)  # a generator leaves the global RNG alone
    assert type(a) is torch.Tensor and a.shape == x.shape and a.dtype == dtype
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)
    single = op(x[0], generator=gen(0))
    assert single.shape == x[0].shape and single.dtype == dtype


def test_global_rng_seeding_without_generator():
    x = randn(4, 2, 32)
    torch.manual_seed(3)
    a = A.TimeWarp()(x)
    torch.manual_seed(3)
    assert torch.equal(a, A.TimeWarp()(x))


def test_bad_parameters():
    with pytest.raises(ValueError, match="sigma"):
        A.Jitter(-1.0)
    with pytest.raises(ValueError, match="scale"):
        A.RandomCrop((0.0, 0.5))
    with pytest.raises(ValueError, match="mode"):
        A.FrequencyPerturbation("blur")


def test_jitter_noise_level():
    x = torch.zeros(64, 4, 256)
    noise = A.Jitter(0.2)(x, generator=gen(0))
    assert abs(noise.std().item() - 0.2) < 0.01 and abs(noise.mean().item()) < 0.01


@pytest.mark.parametrize("per_channel", [True, False])
def test_scaling_is_constant_in_time(per_channel):
    x = 1 + torch.rand(8, 3, 50, generator=gen(0))
    ratio = A.Scaling(0.3, per_channel=per_channel)(x, generator=gen(1)) / x
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), atol=1e-6)
    if not per_channel:
        assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-6)
    else:
        assert not torch.allclose(ratio[:, 0], ratio[:, 1])


def test_permutation_reorders_whole_segments_of_time():
    b, c, t, max_segments = 16, 3, 40, 4
    x = ramp(b, c, t)
    out = A.Permutation(max_segments)(x, generator=gen(0))
    order = out[:, 0].long()  # channel 0 holds the time index itself
    for i in range(b):
        assert sorted(order[i].tolist()) == list(range(t))  # a permutation of time
        assert torch.equal(out[i], x[0][:, order[i]])  # the same reordering for every channel
        breaks = int((order[i, 1:] != order[i, :-1] + 1).sum())
        assert breaks <= max_segments - 1  # at most max_segments contiguous runs
    assert any(not torch.equal(order[i], torch.arange(t)) for i in range(b))


def test_magnitude_warp_is_a_smooth_positive_multiplier():
    x = 1 + torch.rand(4, 2, 200, generator=gen(0), dtype=torch.float64)
    assert torch.allclose(A.MagnitudeWarp(0.0)(x, generator=gen(1)), x, atol=1e-12)
    curve = A.MagnitudeWarp(0.2, knots=4)(x, generator=gen(1)) / x
    assert (curve[..., 1:] - curve[..., :-1]).abs().max() < 0.05  # no jumps
    second = curve[..., 2:] - 2 * curve[..., 1:-1] + curve[..., :-2]
    assert second.abs().max() < 5e-3
    shared = A.MagnitudeWarp(0.2, per_channel=False)(x, generator=gen(1)) / x
    assert torch.allclose(shared[:, 0], shared[:, 1])


def test_time_warp_is_monotone_with_fixed_ends_and_shared_by_channels():
    t = 100
    x = ramp(8, 2, t)
    assert torch.allclose(A.TimeWarp(0.0)(x, generator=gen(0)), x, atol=1e-9)
    out = A.TimeWarp(0.4)(x, generator=gen(0))
    warped = out[:, 0]
    assert (warped[:, 1:] - warped[:, :-1] >= -1e-9).all()
    assert torch.allclose(warped[:, 0], torch.zeros(8, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(warped[:, -1], torch.full((8,), t - 1.0, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(out[:, 1], 2 * warped)
    assert (warped - x[:, 0]).abs().max() > 1  # it did warp


def test_random_crop_is_a_stretched_window():
    t = 60
    x = ramp(32, 1, t)
    low, high = 0.4, 0.8
    out = A.RandomCrop((low, high))(x, generator=gen(0))[:, 0]
    second = out[:, 2:] - 2 * out[:, 1:-1] + out[:, :-2]
    assert second.abs().max() < 1e-9  # a ramp stays a ramp (linear interpolation of a window)
    span = out[:, -1] - out[:, 0]
    assert (span >= low * (t - 1) - 1e-9).all() and (span <= high * (t - 1) + 1e-9).all()
    assert (out[:, 0] >= 0).all() and (out[:, -1] <= t - 1 + 1e-9).all()
    assert torch.allclose(A.RandomCrop((1.0, 1.0))(x, generator=gen(0)), x)


def changed_bins(x, out):
    return (torch.fft.rfft(out, dim=-1) - torch.fft.rfft(x, dim=-1)).abs() > 1e-6


@pytest.mark.parametrize("mode", ["mask", "jitter"])
def test_frequency_perturbation_touches_one_contiguous_band(mode):
    t, band = 128, (0.1, 0.3)
    x = randn(16, 2, t, dtype=torch.float64)
    op = A.FrequencyPerturbation(mode, band=band)
    out = op(x, generator=gen(0))
    changed = changed_bins(x, out).any(dim=1)  # (B, bins)
    n_bins = t // 2 + 1
    for row in changed:
        idx = torch.nonzero(row).flatten()
        assert idx.numel() > 0 and not row[0]  # DC kept
        assert idx[-1] - idx[0] + 1 == idx.numel()  # contiguous
        assert round(band[0] * (n_bins - 1)) - 1 <= idx.numel() <= round(band[1] * (n_bins - 1)) + 1
    assert torch.allclose(out.mean(-1), x.mean(-1))
    if mode == "mask":
        spectrum = torch.fft.rfft(out, dim=-1)
        assert spectrum.abs()[changed.unsqueeze(1).expand_as(spectrum)].max() < 1e-9
    expected = op.band_mask(n_bins, 16, gen(0), x)
    if mode == "mask":
        assert torch.equal(expected, changed)


def test_frequency_perturbation_can_touch_dc():
    x = randn(64, 1, 32, dtype=torch.float64)
    out = A.FrequencyPerturbation("mask", band=(0.9, 1.0), keep_dc=False)(x, generator=gen(0))
    assert changed_bins(x, out)[:, 0, 0].any()


def test_random_resample_keeps_low_and_removes_high_frequencies():
    t = 100
    low = dct_cosine(5, t).expand(8, 2, t)
    assert torch.allclose(A.RandomResample((0.3, 0.9))(low, generator=gen(0)), low, atol=1e-9)
    high = dct_cosine(70, t).expand(8, 2, t)
    assert A.RandomResample((0.5, 0.6))(high, generator=gen(0)).abs().max() < 1e-9
