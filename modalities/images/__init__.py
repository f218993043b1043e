"""Images for otalign: datasets, two-view augmentations, encoders (``otalign.modalities.images``).

* datasets: scikit-learn's bundled 8 x 8 digits and its synthetic domains (offline), torchvision CIFAR-10/100,
  SVHN, STL-10 and image folders (ImageNet-100, PACS) when their files are on disk; the CIFAR-100 hierarchy.
* transforms: the SimCLR recipe (torchvision v2), strong-augmentation and corruption variants, a digits
  augmentation, :class:`TwoViews`, batched application.
* encoders: ResNet-18 with the CIFAR stem, a small CNN, an MLP, the projection head.

torchvision and scikit-learn are imported when a function needs them (``pip install 'otalign[images]'``).

Example::

    >>> from otalign.modalities.images import load_digits_dataset, digits_transform, TwoViews, MLPEncoder
    >>> images, labels, domains = load_digits_dataset()
    >>> v0, v1 = TwoViews(digits_transform()).batch(images[:256])
    >>> features = MLPEncoder((1, 8, 8))(v0)
"""

from .cifar100 import CIFAR100_COARSE, CIFAR100_COARSE_NAMES, CIFAR100_FINE_NAMES, CIFAR100_SUPERCLASSES
from .datasets import (
    DIGITS_COLOUR,
    DIGITS_DOMAINS,
    DIGITS_NOISE_STD,
    DIGITS_ROTATION,
    TORCHVISION_DATASETS,
    DomainFolders,
    dataset_to_tensors,
    digits_domains,
    expected_files,
    load_digits_dataset,
    load_image_folder,
    load_torchvision_dataset,
    train_test_split_indices,
)
from .encoders import MLPEncoder, SmallCNN, projection_head, resnet18_cifar
from .transforms import (
    BRIGHTNESS_SHIFT,
    NOISE_STD,
    BatchCompose,
    BatchTransform,
    Brightness,
    GaussianNoise,
    RandomAffine,
    RandomErase,
    TwoViews,
    as_float_image,
    augment_batch,
    brightness,
    corrupt_subset,
    digits_transform,
    large_erase,
    simclr_transform,
    strong_crop,
)

__all__ = [
    "BRIGHTNESS_SHIFT",
    "BatchCompose",
    "BatchTransform",
    "Brightness",
    "CIFAR100_COARSE",
    "CIFAR100_COARSE_NAMES",
    "CIFAR100_FINE_NAMES",
    "CIFAR100_SUPERCLASSES",
    "DIGITS_COLOUR",
    "DIGITS_DOMAINS",
    "DIGITS_NOISE_STD",
    "DIGITS_ROTATION",
    "DomainFolders",
    "GaussianNoise",
    "MLPEncoder",
    "NOISE_STD",
    "RandomAffine",
    "RandomErase",
    "SmallCNN",
    "TORCHVISION_DATASETS",
    "TwoViews",
    "as_float_image",
    "augment_batch",
    "brightness",
    "corrupt_subset",
    "dataset_to_tensors",
    "digits_domains",
    "digits_transform",
    "expected_files",
    "large_erase",
    "load_digits_dataset",
    "load_image_folder",
    "load_torchvision_dataset",
    "projection_head",
    "resnet18_cifar",
    "simclr_transform",
    "strong_crop",
    "train_test_split_indices",
]
