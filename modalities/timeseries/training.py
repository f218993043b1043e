"""The time-series modality's training glue (registered as ``"timeseries"``): bundled aeon problems as tensors,
sensor augmentations, 1-D encoders.

Datasets (read offline from the aeon package, :mod:`otalign.modalities.timeseries`): ``"basicmotions"`` (6 sensor
channels, 4 activities, 40 train / 40 test series of 100 steps), ``"gunpoint"`` (1 channel, 2 classes, 50 / 150),
``"japanesevowels"`` (12 channels, 9 speakers, 270 / 370, zero-padded to the longest series) and
``"pickupgesture"`` (PickupGestureWiimoteZ, 1 channel, 10 gestures, 50 / 50, zero-padded). The official train/test
split is kept; every channel is standardised with the training split's mean and standard deviation.
``"basicmotions-devices"`` is BasicMotions recorded by 4 synthetic devices
(:func:`~otalign.modalities.timeseries.device_shift_domains`, seed 0; train and test recordings each spread over the
4 devices, stratified by label; each recording's device id is the data's ``"domain"`` metadata).

Views: :func:`~otalign.modalities.timeseries.sensor_transform` (random crop, time and magnitude warps, scaling,
jitter), drawn independently for the two views; ``config.corrupt_severity`` adds Gaussian noise of standard deviation
``0.2 * severity`` (in standardised units) to ``config.corrupt_fraction`` of the ``config.corrupt_view`` series.
Encoders: ``"cnn1d"`` (:class:`~otalign.modalities.timeseries.CNN1d`, width ``hidden_dim // 4``) and ``"tcn"``
(:class:`~otalign.modalities.timeseries.TCN`, ``hidden_dim // 4`` channels).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from otalign.training import Config, Modality, PairViews, TensorData, register_modality
from otalign.training.heads import mlp_head

from .augmentations import sensor_transform
from .datasets import load_aeon_dataset, standardize
from .domains import device_shift_domains
from .encoders import TCN, CNN1d

ENCODERS = ("cnn1d", "tcn")
#: ``config.dataset`` -> aeon problem name.
DATASETS: dict[str, str] = {
    "basicmotions": "BasicMotions",
    "gunpoint": "GunPoint",
    "japanesevowels": "JapaneseVowels",
    "pickupgesture": "PickupGestureWiimoteZ",
}
DEVICE_DATASET = "basicmotions-devices"
N_DEVICES = 4
NOISE_PER_SEVERITY = 0.2


class SeriesViews(PairViews):
    """Two independently augmented views of a batch of series ``(B, C, T)``, optionally with Gaussian noise on a
    random ``fraction`` of the series of one or both views; all randomness comes from the generator passed in.

    Example::

        >>> views = SeriesViews(sensor_transform(), noise_std=0.6, view="second", fraction=0.5)
        >>> x0, x1 = views(series, torch.Generator().manual_seed(0))
    """

    def __init__(self, transform: nn.Module, noise_std: float = 0.0, view: str = "second", fraction: float = 1.0):
        super().__init__(view, fraction)
        if not noise_std >= 0:
            raise ValueError(f"noise_std: expected a number >= 0, got {noise_std!r}")
        self.transform, self.noise_std = transform, noise_std

    @property
    def corrupts(self) -> bool:
        return self.noise_std > 0

    def augment(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        both = self.transform(torch.cat([x, x]).cpu(), generator=generator).to(x.device)
        return both[: x.shape[0]], both[x.shape[0]:]

    def corrupt(self, x: Tensor, generator: torch.Generator) -> Tensor:
        count = self.count(x.shape[0])
        chosen = torch.randperm(x.shape[0], generator=generator)[:count].to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x.device) * self.noise_std
        mask = torch.zeros(x.shape[0], 1, 1, dtype=x.dtype, device=x.device)
        mask[chosen] = 1
        return x + mask * noise


def load_series(name: str) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, dict[str, Tensor]]]:
    """``(train_x (N, C, T), train_y, test_x, test_y, meta)`` of a dataset of :data:`DATASETS` (or
    ``"basicmotions-devices"``), standardised per channel with the training statistics; ``meta`` holds the
    ``"train"`` and ``"test"`` metadata (the device ids as ``"domain"`` for ``"basicmotions-devices"``)."""
    base = "basicmotions" if name == DEVICE_DATASET else name
    if base not in DATASETS:
        raise ValueError(f"dataset: unknown time-series dataset {name!r}; expected one of "
                         f"{[*DATASETS, DEVICE_DATASET]}")
    train = load_aeon_dataset(DATASETS[base], "train")
    test = load_aeon_dataset(DATASETS[base], "test")
    train_x, mean, std = standardize(train.X)
    test_x = (test.X - mean) / std
    train_y, test_y = train.y, test.y
    meta: dict[str, dict[str, Tensor]] = {"train": {}, "test": {}}
    if name == DEVICE_DATASET:
        train_x, train_y, train_d = device_shift_domains(train_x, train_y, N_DEVICES, seed=0)
        test_x, test_y, test_d = device_shift_domains(test_x, test_y, N_DEVICES, seed=0)
        meta = {"train": {"domain": train_d}, "test": {"domain": test_d}}
    return train_x.float(), train_y, test_x.float(), test_y, meta


def load(config: Config, device: torch.device) -> TensorData:
    """The dataset named by ``config.dataset``, on ``device``, with sensor views (and noise if the config asks)."""
    train_x, train_y, test_x, test_y, meta = load_series(config.dataset)
    views = SeriesViews(sensor_transform(), NOISE_PER_SEVERITY * config.corrupt_severity,
                        config.corrupt_view, config.corrupt_fraction)
    on = {split: {key: value.to(device) for key, value in values.items()} for split, values in meta.items()}
    return TensorData(train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device), views,
                      tuple(train_x.shape[1:]), train_meta=on["train"], test_meta=on["test"])


def networks(config: Config, in_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``config.encoder`` (``"cnn1d"`` or ``"tcn"``) for series ``in_shape = (C, T)`` and the projection head."""
    encoder = build_encoder(config.encoder, in_shape[0], config.feature_dim, max(4, config.hidden_dim // 4))
    return encoder, mlp_head(encoder.feature_dim, config.hidden_dim, config.projection_dim)


def build_encoder(name: str, in_channels: int, feature_dim: int, width: int) -> nn.Module:
    """A :class:`CNN1d` or :class:`TCN` mapping ``(B, in_channels, T)`` to ``(B, feature_dim)``."""
    if name == "cnn1d":
        return CNN1d(in_channels, feature_dim=feature_dim, width=width)
    if name == "tcn":
        return TCN(in_channels, feature_dim=feature_dim, channels=width)
    raise ValueError(f"encoder: unknown time-series encoder {name!r}; expected one of {ENCODERS}")


MODALITY = register_modality(Modality(
    "timeseries", load, networks, (*DATASETS, DEVICE_DATASET), ENCODERS,
    "aeon's bundled UEA/UCR sets (BasicMotions, GunPoint, ...) and synthetic device shifts",
))
