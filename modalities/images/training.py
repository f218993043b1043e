"""The images modality's training glue (registered as ``"images"``): datasets as tensors, batched views with
corruption, encoders.

Datasets: ``"digits"`` (scikit-learn's 8x8 digits, bundled) and its domains ``"digits-rotated"``,
``"digits-coloured"``, ``"digits-noisy"``; ``"digits-domains"`` (the four digits domains together, 7,188 RGB
images, with each sample's domain id in the data's ``"domain"`` metadata); ``"cifar10"``, ``"cifar100"``,
``"svhn"``, ``"stl10"`` from ``config.data_root`` when their files are there (stored as uint8, SimCLR views applied
per image; CIFAR-100 carries its 20 superclasses as ``"coarse"`` metadata). The split of digits is a fixed stratified
75/25 split (seed 0), the same for every training seed.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from otalign.training import Config, Modality, PairViews, TensorData, register_modality
from otalign.training.heads import mlp_head

from . import cifar100
from . import datasets as image_datasets
from .encoders import MLPEncoder, SmallCNN, resnet18_cifar
from .transforms import GaussianNoise, augment_batch, corrupt_subset, digits_transform, simclr_transform

ENCODERS = ("mlp", "cnn", "resnet18")
DOMAINS_DATASET = "digits-domains"
DATASETS = ("digits", *[f"digits-{d}" for d in image_datasets.DIGITS_DOMAINS[1:]], DOMAINS_DATASET,
            *image_datasets.TORCHVISION_DATASETS)
SPLIT_SEED = 0


class ImageViews(PairViews):
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
        super().__init__(view, fraction)
        self.transform, self.corruption = transform, corruption

    @property
    def corrupts(self) -> bool:
        return self.corruption is not None

    def augment(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        both = augment_batch(self.transform, torch.cat([x, x]), generator)  # one call: independent draws
        return both[: x.shape[0]], both[x.shape[0]:]

    def corrupt(self, batch: Tensor, generator: torch.Generator) -> Tensor:
        return corrupt_subset(batch, self.corruption, self.fraction, generator)[0]


def _uint8_to_float(x: Tensor) -> Tensor:
    return x.float() / 255.0


def load(config: Config, device: torch.device) -> TensorData:
    """The dataset named by ``config.dataset``, on ``device``, with the views the config asks for."""
    corruption = GaussianNoise(config.corrupt_severity) if config.corrupt_severity else None
    name = config.dataset
    if name == "digits" or name.startswith("digits-"):
        return _digits(name, corruption, config, device)
    if name in image_datasets.TORCHVISION_DATASETS:
        train_x, train_y = image_datasets.dataset_to_tensors(
            image_datasets.load_torchvision_dataset(name, config.data_root, True))
        test_x, test_y = image_datasets.dataset_to_tensors(
            image_datasets.load_torchvision_dataset(name, config.data_root, False))
        size = train_x.shape[-1]
        views = ImageViews(simclr_transform(size), corruption, config.corrupt_view, config.corrupt_fraction)
        meta = {}
        if name == "cifar100":
            coarse = torch.as_tensor(cifar100.CIFAR100_COARSE)
            meta = {"train": {"coarse": coarse[train_y]}, "test": {"coarse": coarse[test_y]}}
        return TensorData(train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device), views,
                          (train_x.shape[1], size, size), _uint8_to_float, _on(meta.get("train"), device),
                          _on(meta.get("test"), device))
    raise ValueError(f"dataset: unknown image dataset {name!r}; expected one of {list(DATASETS)}")


def _digits(name: str, corruption, config: Config, device: torch.device) -> TensorData:
    if name == DOMAINS_DATASET:
        images, labels, domains = image_datasets.digits_domains(image_datasets.DIGITS_DOMAINS, seed=SPLIT_SEED)
    else:
        domain = "clean" if name == "digits" else name.split("-", 1)[1]
        if domain not in image_datasets.DIGITS_DOMAINS:
            raise ValueError(f"dataset: unknown image dataset {name!r}; expected one of {list(DATASETS)}")
        images, labels, domains = image_datasets.load_digits_dataset(domain, seed=SPLIT_SEED)
    strata = labels * len(image_datasets.DIGITS_DOMAINS) + domains  # every (class, domain) in both splits
    train, test = image_datasets.train_test_split_indices(images.shape[0], 0.25, seed=SPLIT_SEED, labels=strata)
    views = ImageViews(digits_transform(), corruption, config.corrupt_view, config.corrupt_fraction)
    meta = ({"train": {"domain": domains[train].to(device)}, "test": {"domain": domains[test].to(device)}}
            if name == DOMAINS_DATASET else {"train": {}, "test": {}})
    return TensorData(images[train].to(device), labels[train].to(device), images[test].to(device),
                      labels[test].to(device), views, tuple(images.shape[1:]), train_meta=meta["train"],
                      test_meta=meta["test"])


def _on(meta, device):
    return {} if meta is None else {key: value.to(device) for key, value in meta.items()}


def networks(config: Config, in_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``config.encoder`` (``"mlp"``, ``"cnn"``, ``"resnet18"``) and the projection head (SimCLR's: no bias before
    its BatchNorm)."""
    channels = in_shape[0]
    if config.encoder == "mlp":
        encoder = MLPEncoder(in_shape, hidden=config.hidden_dim, feature_dim=config.feature_dim)
    elif config.encoder == "cnn":
        encoder = SmallCNN(in_channels=channels, feature_dim=config.feature_dim)
    elif config.encoder == "resnet18":
        encoder = resnet18_cifar(feature_dim=config.feature_dim, in_channels=channels)
    else:
        raise ValueError(f"encoder: unknown image encoder {config.encoder!r}; expected one of {ENCODERS}")
    return encoder, mlp_head(encoder.feature_dim, config.hidden_dim, config.projection_dim, first_bias=False)


MODALITY = register_modality(Modality(
    "images", load, networks, DATASETS, ENCODERS,
    "scikit-learn's digits and its domains offline; CIFAR, SVHN, STL-10 from disk",
))
