"""Two-view augmentations for sensor time series, batched and seeded by a ``torch.Generator``.

Every transform here is a :class:`~otalign.modalities.timeseries.series_transform.SeriesTransform`: it takes a
series ``(C, T)`` or a batch ``(B, C, T)``, keeps the shape and the dtype, draws independent random parameters for
each series, and is called as ``transform(x, generator=None)`` (a generator fixes the output).

:class:`Jitter`'s ``sigma`` is in the data's units, so standardise each channel first
(``otalign.modalities.timeseries.standardize``).

Two views of a batch: :class:`otalign.modalities.views.TwoViews` (``otalign.modalities.timeseries.TwoViews``).

Example::

    >>> from otalign.modalities.views import TwoViews
    >>> g = torch.Generator().manual_seed(0)
    >>> views = TwoViews(sensor_transform())
    >>> v0, v1 = views(torch.randn(32, 6, 100), generator=g)
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from .resampling import resample_length, sample_linear, smooth_curves
from .series_transform import (
    Compose,
    RandomApply,
    SeriesTransform,
    check_nonneg,
    check_range,
    draw_device,
    draw_rand,
    draw_randn,
)


class Jitter(SeriesTransform):
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` to every sample.

    Example::

        >>> Jitter(0.03)(torch.randn(6, 100), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([6, 100])
    """

    def __init__(self, sigma: float = 0.03):
        super().__init__()
        self.sigma = check_nonneg("sigma", sigma)

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        return x + self.sigma * draw_randn(x.shape, generator, x)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}"


class Scaling(SeriesTransform):
    """Multiply each channel (``per_channel=True``) or each whole series by a factor drawn from
    ``N(1, sigma^2)``, constant over time."""

    def __init__(self, sigma: float = 0.1, per_channel: bool = True):
        super().__init__()
        self.sigma = check_nonneg("sigma", sigma)
        self.per_channel = bool(per_channel)

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        b, c, _ = x.shape
        factor = 1 + self.sigma * draw_randn((b, c if self.per_channel else 1, 1), generator, x)
        return x * factor

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, per_channel={self.per_channel}"


class Permutation(SeriesTransform):
    """Cut the time axis into ``k`` segments at random points and reorder the segments at random (all channels
    together); ``k`` is drawn uniformly from ``1 .. max_segments`` (``k = 1``, or a permutation that happens to be
    the identity, leaves the series unchanged). The output holds the same samples, reordered in time."""

    def __init__(self, max_segments: int = 5):
        super().__init__()
        if not isinstance(max_segments, int) or max_segments < 1:
            raise ValueError(f"max_segments: expected an int >= 1, got {max_segments!r}")
        self.max_segments = max_segments

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        b, c, t = x.shape
        device = draw_device(generator, x)
        rows = []
        for _ in range(b):
            k = int(torch.randint(1, min(self.max_segments, t) + 1, (1,), generator=generator, device=device))
            cuts = (torch.randperm(t - 1, generator=generator, device=device)[: k - 1] + 1).sort().values
            bounds = torch.cat([cuts.new_zeros(1), cuts, cuts.new_full((1,), t)]).tolist()
            order = torch.randperm(k, generator=generator, device=device).tolist()
            rows.append(torch.cat([torch.arange(bounds[i], bounds[i + 1]) for i in order]))
        index = torch.stack(rows).to(x.device)
        return x.gather(-1, index.unsqueeze(1).expand(-1, c, -1))

    def extra_repr(self) -> str:
        return f"max_segments={self.max_segments}"


class MagnitudeWarp(SeriesTransform):
    """Multiply each channel by a smooth random curve: ``knots + 2`` values drawn from ``N(1, sigma^2)`` placed
    evenly over the series (both ends included) and joined by cubic interpolation. One curve per channel
    (``per_channel=True``) or one per series."""

    def __init__(self, sigma: float = 0.2, knots: int = 4, per_channel: bool = True):
        super().__init__()
        self.sigma = check_nonneg("sigma", sigma)
        if not isinstance(knots, int) or knots < 0:
            raise ValueError(f"knots: expected an int >= 0, got {knots!r}")
        self.knots, self.per_channel = knots, bool(per_channel)

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        b, c, t = x.shape
        values = 1 + self.sigma * draw_randn((b, c if self.per_channel else 1, self.knots + 2), generator, x)
        return x * smooth_curves(values, t)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, knots={self.knots}, per_channel={self.per_channel}"


class TimeWarp(SeriesTransform):
    """Smoothly speed up and slow down time: a random speed curve (``knots + 2`` values from ``N(1, sigma^2)``,
    cubic-interpolated, clipped to ``>= min_speed``) is integrated into a monotone map of ``[0, T - 1]`` onto itself
    (end points fixed), and the series is read at the warped times by linear interpolation. All channels share the
    warp."""

    def __init__(self, sigma: float = 0.2, knots: int = 4, min_speed: float = 0.1):
        super().__init__()
        self.sigma = check_nonneg("sigma", sigma)
        if not isinstance(knots, int) or knots < 0:
            raise ValueError(f"knots: expected an int >= 0, got {knots!r}")
        if not min_speed > 0:
            raise ValueError(f"min_speed: must be > 0, got {min_speed}")
        self.knots, self.min_speed = knots, float(min_speed)

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        b, _, t = x.shape
        if t < 2:
            return x.clone()
        speed = smooth_curves(1 + self.sigma * draw_randn((b, self.knots + 2), generator, x), t - 1)
        steps = speed.clamp_min(self.min_speed)
        clock = torch.cat([steps.new_zeros(b, 1), steps.cumsum(-1)], dim=-1)
        positions = clock / clock[:, -1:] * (t - 1)
        return sample_linear(x, positions)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, knots={self.knots}, min_speed={self.min_speed:g}"


class RandomCrop(SeriesTransform):
    """Crop a random window covering a fraction ``scale`` (drawn uniformly) of the series and stretch it back to
    ``T`` samples by linear interpolation. ``scale=(1, 1)`` is the identity."""

    def __init__(self, scale: Sequence[float] = (0.5, 1.0)):
        super().__init__()
        self.scale = check_range("scale", scale, 0.0, 1.0)
        if self.scale[0] <= 0:
            raise ValueError(f"scale: the low end must be > 0, got {self.scale}")

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        b, _, t = x.shape
        low, high = self.scale
        fraction = low + (high - low) * draw_rand((b, 1), generator, x)
        start = (1 - fraction) * draw_rand((b, 1), generator, x) * (t - 1)
        grid = torch.linspace(0, 1, t, device=x.device, dtype=x.dtype).unsqueeze(0)
        return sample_linear(x, start + grid * fraction * (t - 1))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class FrequencyPerturbation(SeriesTransform):
    """Perturb one random frequency band of each series in the Fourier domain (``rfft`` along time).

    The band covers a fraction ``band`` (drawn uniformly) of the ``T // 2 + 1`` frequency bins, at a random
    position; all channels of a series share it. ``mode="jitter"`` multiplies each bin of the band by
    ``exp(N(0, amplitude_sigma^2))`` and rotates its phase by ``N(0, phase_sigma^2)`` radians (independently per
    channel); ``mode="mask"`` sets the band to zero. With ``keep_dc=True`` the zero-frequency bin (the mean) is never
    touched. Bins outside the band are unchanged.
    """

    MODES = ("jitter", "mask")

    def __init__(
        self,
        mode: str = "jitter",
        band: Sequence[float] = (0.05, 0.25),
        amplitude_sigma: float = 0.3,
        phase_sigma: float = 0.5,
        keep_dc: bool = True,
    ):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode: expected one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.band = check_range("band", band, 0.0, 1.0)
        self.amplitude_sigma = check_nonneg("amplitude_sigma", amplitude_sigma)
        self.phase_sigma = check_nonneg("phase_sigma", phase_sigma)
        self.keep_dc = bool(keep_dc)

    def band_mask(self, n_bins: int, batch: int, generator: Optional[torch.Generator], like: Tensor) -> Tensor:
        """The bool mask ``(batch, n_bins)`` of the bins each series perturbs (drawn as in :meth:`apply`)."""
        first = 1 if self.keep_dc else 0
        available = n_bins - first
        low, high = self.band
        width = (available * (low + (high - low) * draw_rand((batch, 1), generator, like))).round().clamp(1, available)
        start = first + ((available - width + 1) * draw_rand((batch, 1), generator, like)).floor()
        bins = torch.arange(n_bins, device=like.device, dtype=like.dtype).unsqueeze(0)
        return (bins >= start) & (bins < start + width)

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        b, c, t = x.shape
        n_bins = t // 2 + 1
        if n_bins - (1 if self.keep_dc else 0) < 1:
            return x.clone()
        spectrum = torch.fft.rfft(x, dim=-1)
        mask = self.band_mask(n_bins, b, generator, x).unsqueeze(1)
        if self.mode == "mask":
            spectrum = spectrum.masked_fill(mask, 0)
        else:
            log_gain = self.amplitude_sigma * draw_randn((b, c, n_bins), generator, x)
            phase = self.phase_sigma * draw_randn((b, c, n_bins), generator, x)
            factor = torch.polar(log_gain.exp(), phase)
            spectrum = torch.where(mask, spectrum * factor, spectrum)
        return torch.fft.irfft(spectrum, n=t, dim=-1)

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, band={self.band}, amplitude_sigma={self.amplitude_sigma:g}, "
            f"phase_sigma={self.phase_sigma:g}, keep_dc={self.keep_dc}"
        )


class RandomResample(SeriesTransform):
    """Simulate a lower sampling rate: resample each series to ``round(rate T)`` samples (``rate`` drawn uniformly
    from ``rate``), then back to ``T`` (:func:`resample_length`). This removes the content
    above the lower rate's Nyquist frequency and keeps the rest exactly. Rates above 1 are allowed (a round trip
    through a higher rate, close to the identity)."""

    def __init__(self, rate: Sequence[float] = (0.5, 1.0)):
        super().__init__()
        self.rate = check_range("rate", rate, 0.0, float("inf"))
        if self.rate[0] <= 0:
            raise ValueError(f"rate: the low end must be > 0, got {self.rate}")

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        b, _, t = x.shape
        low, high = self.rate
        rate = low + (high - low) * draw_rand((b,), generator, x)
        lengths = (rate * t).round().clamp_min(2).long()
        out = x.clone()
        for length in lengths.unique().tolist():
            rows = lengths == length
            out[rows] = resample_length(resample_length(x[rows], length), t)
        return out

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def sensor_transform(
    jitter: float = 0.03,
    scaling: float = 0.1,
    warp: float = 0.2,
    crop_scale: Sequence[float] = (0.7, 1.0),
    p: float = 0.5,
) -> Compose:
    """A two-view recipe for standardised sensor recordings: random crop (``crop_scale``), then with probability
    ``p`` each a time warp and a magnitude warp (``sigma = warp``), per-channel scaling (``sigma = scaling``) and
    jitter (``sigma = jitter``), always. Batched and seeded.

    Example::

        >>> v0, v1 = TwoViews(sensor_transform())(x, generator=torch.Generator().manual_seed(0))
    """
    return Compose([
        RandomCrop(crop_scale),
        RandomApply(TimeWarp(warp), p),
        RandomApply(MagnitudeWarp(warp), p),
        Scaling(scaling),
        Jitter(jitter),
    ])


__all__ = [
    "FrequencyPerturbation",
    "Jitter",
    "MagnitudeWarp",
    "Permutation",
    "RandomCrop",
    "RandomResample",
    "Scaling",
    "TimeWarp",
    "sensor_transform",
]
