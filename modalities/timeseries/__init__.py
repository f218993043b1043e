"""Sensor time series for otalign: datasets, device-shift domains, two-view augmentations, encoders
(``otalign.modalities.timeseries``).

Tensors are ``(N, C, T)`` float32 (series x channels x time steps); labels and domain ids ``(N,)`` int64.

* datasets (:mod:`.datasets`): :func:`load_aeon_dataset` reads the UEA/UCR problems bundled inside the aeon package
  (offline; :func:`bundled_aeon_datasets` lists them; an unbundled name raises ``ValueError`` and nothing is
  downloaded) and returns ``SeriesDataset(X, y, classes)``; BasicMotions is the sensor set (smartwatch
  accelerometer + gyroscope, 6 channels, 4 activities, 40 + 40 series of 100 steps). Unequal lengths
  (JapaneseVowels, PickupGestureWiimoteZ) are zero-padded at the end or resampled. :func:`from_arrays` wraps any
  arrays; :func:`standardize` gives per-channel z-scores.
* domains (:mod:`.domains`): :func:`device_shift_domains` ``(X, y, n_domains, seed) -> (X, y, domains)`` records
  each domain with its own fixed synthetic device (a 3-D rotation of every accelerometer/gyroscope triad, per-channel
  gain and offset, a lower sampling rate, additive noise; :class:`DeviceShift`).
* augmentations (:mod:`.augmentations`): :class:`Jitter`, :class:`Scaling`, :class:`Permutation`,
  :class:`MagnitudeWarp`, :class:`TimeWarp`, :class:`RandomCrop`, :class:`FrequencyPerturbation`,
  :class:`RandomResample`, the recipe :func:`sensor_transform`; their base :class:`SeriesTransform` and the
  combinators :class:`RandomApply`, :class:`Compose` (:mod:`.series_transform`). All are batched, keep shape and
  dtype, and are called ``t(x, generator=None)``: a ``torch.Generator`` fixes the output. :class:`TwoViews` (the
  modalities' shared :class:`otalign.modalities.views.TwoViews`) draws two views with them.
* resampling (:mod:`.resampling`): :func:`resample_length` changes the sampling rate (band-limited, in torch).
* encoders (:mod:`.encoders`): :class:`CNN1d` (3 Conv1d-BN-ReLU blocks, global average pooling) and :class:`TCN`
  (residual causal dilated blocks); ``(B, C, T) -> (B, feature_dim)``, attribute ``feature_dim``.

aeon is imported only by the aeon loaders (``pip install 'otalign[timeseries]'``); the rest needs torch only.

Example::

    >>> import torch
    >>> from otalign.modalities.timeseries import (
    ...     load_aeon_dataset, standardize, device_shift_domains, sensor_transform, TwoViews, CNN1d)
    >>> X, y, classes = load_aeon_dataset("BasicMotions", "train")          # (40, 6, 100), 4 classes
    >>> X, mean, std = standardize(X)
    >>> Xd, yd, domains = device_shift_domains(X, y, n_domains=4, seed=0)
    >>> v0, v1 = TwoViews(sensor_transform())(Xd, generator=torch.Generator().manual_seed(0))
    >>> features = CNN1d(in_channels=6)(v0)                                   # (40, 128)
"""

from ..views import TwoViews
from .augmentations import (
    FrequencyPerturbation,
    Jitter,
    MagnitudeWarp,
    Permutation,
    RandomCrop,
    RandomResample,
    Scaling,
    TimeWarp,
    sensor_transform,
)
from .datasets import (
    BASICMOTIONS_TRIADS,
    SPLITS,
    UNEQUAL_MODES,
    SeriesDataset,
    bundled_aeon_datasets,
    from_arrays,
    load_aeon_dataset,
    series_length_range,
    standardize,
)
from .domains import DeviceShift, device_shift_domains, random_devices, random_rotation, rotate_triads
from .encoders import CNN1d, TCN, CausalConv1d, TemporalBlock
from .resampling import resample_length
from .series_transform import Compose, RandomApply, SeriesTransform

__all__ = [
    "BASICMOTIONS_TRIADS",
    "CNN1d",
    "CausalConv1d",
    "Compose",
    "DeviceShift",
    "FrequencyPerturbation",
    "Jitter",
    "MagnitudeWarp",
    "Permutation",
    "RandomApply",
    "RandomCrop",
    "RandomResample",
    "SPLITS",
    "Scaling",
    "SeriesDataset",
    "SeriesTransform",
    "TCN",
    "TemporalBlock",
    "TimeWarp",
    "TwoViews",
    "UNEQUAL_MODES",
    "bundled_aeon_datasets",
    "device_shift_domains",
    "from_arrays",
    "load_aeon_dataset",
    "random_devices",
    "random_rotation",
    "resample_length",
    "rotate_triads",
    "sensor_transform",
    "series_length_range",
    "standardize",
]
