"""The images modality for the trainer: datasets as tensors, batched views with corruption, encoders.

Datasets: ``"digits"`` (scikit-learn's 8x8 digits, bundled) and its domains ``"digits-rotated"``,
``"digits-coloured"``, ``"digits-noisy"``; ``"cifar10"``, ``"cifar100"``, ``"svhn"``, ``"stl10"`` from
``config.data_root`` when their files are there (stored as uint8, SimCLR views applied per image). The split of
digits is a fixed stratified 75/25 split (seed 0), the same for every training seed.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..modalities import images as adapter
from .config import Config
from .data import TensorData

ENCODERS = ("mlp", "cnn", "resnet18")
SPLIT_SEED = 0


class ImageViews:
    """Two independently augmented views of a batch, with an optional corruption of one or both views.

    ``corruption`` is applied to ``round(fraction * B)`` randomly chosen images of the corrupted view(s) in every
    batch (:func:`otalign.modalities.images.corrupt_subset`); all randomness comes from the CPU generator passed in.

    Example::

        >>> views = ImageViews(digits_transform(), GaussianNoise(5), view="second", fraction=0.5)
        >>> x0, x1 = views(images, torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        transform: Callable,
        corruption: Optional[Callable] = None,
        view: str = "second",
        fraction: float = 1.0,
    ):
        if view not in ("first", "second", "both"):
            raise ValueError(f"view: expected 'first', 'second' or 'both', got {view!r}")
        self.transform, self.corruption, self.view, self.fraction = transform, corruption, view, fraction

    def __call__(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        both = adapter.augment_batch(self.transform, torch.cat([x, x]), generator)  # one call: independent draws
        views = [both[: x.shape[0]], both[x.shape[0]:]]
        if self.corruption is not None:
            which = {"first": (0,), "second": (1,), "both": (0, 1)}[self.view]
            for v in which:
                views[v], _ = adapter.corrupt_subset(views[v], self.corruption, self.fraction, generator)
        return views[0], views[1]


def _uint8_to_float(x: Tensor) -> Tensor:
    return x.float() / 255.0


def load(config: Config, device: torch.device) -> TensorData:
    """The dataset named by ``config.dataset``, on ``device``, with the views the config asks for."""
    corruption = adapter.GaussianNoise(config.corrupt_severity) if config.corrupt_severity else None
    name = config.dataset
    if name == "digits" or name.startswith("digits-"):
        domain = "clean" if name == "digits" else name.split("-", 1)[1]
        images, labels, _ = adapter.load_digits_dataset(domain, seed=SPLIT_SEED)
        train, test = adapter.train_test_split_indices(images.shape[0], 0.25, seed=SPLIT_SEED, labels=labels)
        views = ImageViews(adapter.digits_transform(), corruption, config.corrupt_view, config.corrupt_fraction)
        return TensorData(images[train].to(device), labels[train].to(device), images[test].to(device),
                          labels[test].to(device), views, tuple(images.shape[1:]))
    if name in adapter.TORCHVISION_DATASETS:
        train_x, train_y = adapter.dataset_to_tensors(adapter.load_torchvision_dataset(name, config.data_root, True))
        test_x, test_y = adapter.dataset_to_tensors(adapter.load_torchvision_dataset(name, config.data_root, False))
        size = train_x.shape[-1]
        views = ImageViews(adapter.simclr_transform(size), corruption, config.corrupt_view, config.corrupt_fraction)
        return TensorData(train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device), views,
                          (train_x.shape[1], size, size), _uint8_to_float)
    known = ["digits", *[f"digits-{d}" for d in adapter.DIGITS_DOMAINS[1:]], *adapter.TORCHVISION_DATASETS]
    raise ValueError(f"dataset: unknown image dataset {name!r}; expected one of {known}")


def networks(config: Config, in_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``config.encoder`` (``"mlp"``, ``"cnn"``, ``"resnet18"``) and the projection head."""
    channels = in_shape[0]
    if config.encoder == "mlp":
        encoder = adapter.MLPEncoder(in_shape, hidden=config.hidden_dim, feature_dim=config.feature_dim)
    elif config.encoder == "cnn":
        encoder = adapter.SmallCNN(in_channels=channels, feature_dim=config.feature_dim)
    elif config.encoder == "resnet18":
        encoder = adapter.resnet18_cifar(feature_dim=config.feature_dim, in_channels=channels)
    else:
        raise ValueError(f"encoder: unknown image encoder {config.encoder!r}; expected one of {ENCODERS}")
    return encoder, adapter.projection_head(encoder.feature_dim, config.hidden_dim, config.projection_dim)
