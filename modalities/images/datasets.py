"""Image datasets: scikit-learn's bundled digits (offline) with synthetic domains, and torchvision datasets or
image folders when their files are on disk (nothing is ever downloaded).

Tensors: images ``(N, C, H, W)`` float32 in ``[0, 1]``; labels and domain ids ``(N,)`` int64.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from .cifar100 import CIFAR100_COARSE, CIFAR100_COARSE_NAMES, CIFAR100_FINE_NAMES

# --------------------------------------------------------------------------------------------------- digits
#: The digits domains, in the order that defines their domain ids.
DIGITS_DOMAINS: tuple[str, ...] = ("clean", "rotated", "coloured", "noisy")
#: Rotation of the "rotated" domain, degrees counter-clockwise (a multiple of 90: lossless on the 8 x 8 grid).
DIGITS_ROTATION = 90
#: RGB tint of the "coloured" domain (each grey level ``v`` becomes ``v * colour``).
DIGITS_COLOUR = (1.0, 0.55, 0.1)
#: Standard deviation of the "noisy" domain's Gaussian noise, on the ``[0, 1]`` pixel scale.
DIGITS_NOISE_STD = 0.25


def _sklearn_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits_dataset needs scikit-learn: pip install 'otalign[images]'") from err
    return load_digits()


def load_digits_dataset(domain: str = "clean", seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """scikit-learn's bundled 8 x 8 handwritten digits (1,797 images, 10 classes), in one domain.

    Pixel values 0..16 are scaled to ``[0, 1]``. Every domain keeps the sample order, so sample ``i`` is the same
    digit in each domain.

    Args:
        domain: ``"clean"``; ``"rotated"`` (every image rotated by :data:`DIGITS_ROTATION` degrees);
            ``"coloured"`` (3 channels, tinted by :data:`DIGITS_COLOUR`); ``"noisy"`` (Gaussian noise of std
            :data:`DIGITS_NOISE_STD`, clipped to ``[0, 1]``).
        seed: seeds the noise of the ``"noisy"`` domain (the other domains are deterministic).

    Returns:
        ``images (N, C, 8, 8)`` float32 (``C = 3`` for ``"coloured"``, else 1), ``labels (N,)`` int64 in 0..9,
        ``domains (N,)`` int64, all equal to the domain's index in :data:`DIGITS_DOMAINS`.

    Example::

        >>> images, labels, domains = load_digits_dataset("rotated")
        >>> images.shape
        torch.Size([1797, 1, 8, 8])
    """
    if domain not in DIGITS_DOMAINS:
        raise ValueError(f"domain: expected one of {DIGITS_DOMAINS}, got {domain!r}")
    digits = _sklearn_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    if domain == "rotated":
        images = torch.rot90(images, k=DIGITS_ROTATION // 90, dims=(-2, -1))
    elif domain == "coloured":
        images = images * torch.tensor(DIGITS_COLOUR).view(1, 3, 1, 1)
    elif domain == "noisy":
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
        images = (images + DIGITS_NOISE_STD * noise).clamp(0.0, 1.0)
    domains = torch.full_like(labels, DIGITS_DOMAINS.index(domain))
    return images.contiguous(), labels, domains


def digits_domains(names: Sequence[str] = DIGITS_DOMAINS, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Several digits domains stacked: ``(len(names) * 1797, 3, 8, 8)`` images (grey domains repeated to 3
    channels), labels, and domain ids (each domain's index in :data:`DIGITS_DOMAINS`, so ids do not depend on
    which domains are chosen). Use the domain ids with ``otalign.targets.domain_prior`` or to hold one domain out.
    """
    names = tuple(names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"names: expected distinct domain names, got {names!r}")
    parts = [load_digits_dataset(name, seed=seed) for name in names]
    images = torch.cat([x.expand(-1, 3, -1, -1) for x, _, _ in parts])
    return images.contiguous(), torch.cat([y for _, y, _ in parts]), torch.cat([d for _, _, d in parts])


def train_test_split_indices(
    n: int, test_fraction: float = 0.25, seed: int = 0, *, labels: Optional[Tensor] = None
) -> tuple[Tensor, Tensor]:
    """A random split of ``range(n)`` into sorted ``(train_idx, test_idx)`` LongTensors.

    With ``labels`` (``(n,)``) the split is stratified: each class contributes ``round(test_fraction * n_c)``
    test samples (at least one when it has two or more samples).
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n: expected an int >= 2, got {n!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    generator = torch.Generator().manual_seed(seed)
    if labels is None:
        groups = [torch.arange(n)]
    else:
        if not isinstance(labels, Tensor) or labels.shape != (n,):
            raise ValueError(f"labels: expected a tensor of shape ({n},)")
        groups = [torch.nonzero(labels.cpu() == c).flatten() for c in torch.unique(labels.cpu())]
    test = []
    for members in groups:
        n_test = min(max(round(test_fraction * members.numel()), 1), members.numel() - 1)
        test.append(members[torch.randperm(members.numel(), generator=generator)[:n_test]])
    test_idx = torch.cat(test).sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[test_idx] = False
    return torch.nonzero(keep).flatten(), test_idx


# --------------------------------------------------------------------------------------------------- torchvision
#: Files torchvision reads for each dataset, relative to ``root``, and where they come from.
_LAYOUTS = {
    "cifar10": (
        ["cifar-10-batches-py/" + f for f in
         ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
          "batches.meta")],
        "extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into root",
    ),
    "cifar100": (
        ["cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"],
        "extract cifar-100-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into root",
    ),
    "svhn": (
        None,  # depends on the split: root/<split>_32x32.mat
        "put the split's .mat file (http://ufldl.stanford.edu/housenumbers/, format 2) directly in root",
    ),
    "stl10": (
        ["stl10_binary/" + f for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")],
        "extract stl10_binary.tar.gz (https://cs.stanford.edu/~acoates/stl10/) into root",
    ),
}
TORCHVISION_DATASETS: tuple[str, ...] = tuple(_LAYOUTS)


def _split(name: str, train: bool, split: Optional[str]) -> Optional[str]:
    if name in ("cifar10", "cifar100"):
        if split is not None:
            raise ValueError(f"split: {name} has no split argument (use train=True/False), got {split!r}")
        return None
    allowed = ("train", "test", "extra") if name == "svhn" else ("train", "test", "unlabeled", "train+unlabeled")
    split = ("train" if train else "test") if split is None else split
    if split not in allowed:
        raise ValueError(f"split: expected one of {allowed} for {name}, got {split!r}")
    return split


def expected_files(name: str, train: bool = True, split: Optional[str] = None) -> list[str]:
    """The files (relative to ``root``) that :func:`load_torchvision_dataset` needs for this dataset and split."""
    name = _check_name(name)
    split = _split(name, train, split)
    files, _ = _LAYOUTS[name]
    return [f"{split}_32x32.mat"] if name == "svhn" else list(files)


def _check_name(name: str) -> str:
    key = str(name).lower().replace("-", "")
    if key not in _LAYOUTS:
        raise ValueError(f"name: expected one of {TORCHVISION_DATASETS}, got {name!r}")
    return key


def _without_checksums(cls: type) -> type:
    """A subclass of a torchvision dataset class whose file checks test existence only (md5 set to None)."""
    attrs: dict = {}
    for key in ("train_list", "test_list"):
        if hasattr(cls, key):
            attrs[key] = [[entry[0], None] for entry in getattr(cls, key)]
    if isinstance(getattr(cls, "meta", None), dict):
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        attrs["split_list"] = {k: [v[0], v[1], None] for k, v in cls.split_list.items()}
    return type(cls.__name__, (cls,), attrs)


def load_torchvision_dataset(
    name: str,
    root: Union[str, os.PathLike],
    train: bool = True,
    transform: Optional[Callable] = None,
    *,
    split: Optional[str] = None,
    target_transform: Optional[Callable] = None,
    verify: bool = True,
):
    """CIFAR-10, CIFAR-100, SVHN or STL-10 from files already on disk (``download=False`` always).

    Layouts under ``root`` (what torchvision reads):

    * ``cifar10``: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
    * ``cifar100``: ``root/cifar-100-python/{train, test, meta}``
    * ``svhn``: ``root/{train,test,extra}_32x32.mat`` (the requested split's file)
    * ``stl10``: ``root/stl10_binary/{train_X.bin, train_y.bin, unlabeled_X.bin, test_X.bin, test_y.bin}``

    Args:
        name: one of :data:`TORCHVISION_DATASETS`.
        root: the folder holding the layout above.
        train: training or test split.
        transform: applied to each PIL image (e.g. ``simclr_transform()``, which accepts PIL images).
        split: SVHN ``"extra"``, STL-10 ``"unlabeled"`` / ``"train+unlabeled"``; overrides ``train``.
        target_transform: applied to each label.
        verify: check the files' md5 sums against torchvision's (slow for big files; ``False`` checks existence).

    Returns:
        The torchvision dataset (items ``(image, label)``; SVHN's digit 0 is label 0; CIFAR-100 labels are fine
        labels, map them with :data:`CIFAR100_COARSE`).

    Raises:
        FileNotFoundError: files are missing; the message lists them and the expected layout.
        RuntimeError: the files exist but fail torchvision's checksum test (``verify=True``).

    Example::

        >>> train = load_torchvision_dataset("cifar10", "~/data", train=True, transform=TwoViews(simclr_transform()))
    """
    from torchvision import datasets as tv_datasets

    name = _check_name(name)
    split = _split(name, train, split)
    root = Path(root).expanduser()
    missing = [f for f in expected_files(name, train, split) if not (root / f).is_file()]
    if missing:
        _, source = _LAYOUTS[name]
        raise FileNotFoundError(
            f"{name}: missing {', '.join(str(root / f) for f in missing)}. Expected these files under "
            f"root={str(root)!r}: {', '.join(expected_files(name, train, split))}; to get them, {source}. "
            f"Nothing is downloaded."
        )
    cls = {"cifar10": tv_datasets.CIFAR10, "cifar100": tv_datasets.CIFAR100, "svhn": tv_datasets.SVHN,
           "stl10": tv_datasets.STL10}[name]
    if not verify:
        cls = _without_checksums(cls)
    kwargs = dict(transform=transform, target_transform=target_transform, download=False)
    try:
        if split is None:
            return cls(str(root), train=train, **kwargs)
        return cls(str(root), split=split, **kwargs)
    except RuntimeError as err:
        raise RuntimeError(
            f"{name}: the files under {str(root)!r} fail torchvision's checksum test (corrupted, or not the official "
            f"release); re-extract the official archive, or pass verify=False to load them anyway"
        ) from err


# --------------------------------------------------------------------------------------------------- image folders
def _image_extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def _check_image_folder(root: Path, what: str) -> None:
    layout = f"{what}/<class_name>/<image>{{{','.join(_image_extensions())}}}"
    if not root.is_dir():
        raise FileNotFoundError(f"root: {str(root)!r} is not a folder; expected the layout {layout}")
    for class_dir in root.iterdir():
        if class_dir.is_dir() and any(f.suffix.lower() in _image_extensions() for f in class_dir.iterdir()):
            return
    raise FileNotFoundError(f"root: no class folder with images under {str(root)!r}; expected the layout {layout}")


def load_image_folder(root: Union[str, os.PathLike], transform: Optional[Callable] = None):
    """A ``torchvision.datasets.ImageFolder`` over ``root/<class_name>/<image>`` (e.g. an ImageNet-100 split, or
    one PACS domain); classes are the sorted folder names. Items are ``(PIL image or transform(image), label)``."""
    from torchvision.datasets import ImageFolder

    root = Path(root).expanduser()
    _check_image_folder(root, str(root))
    return ImageFolder(str(root), transform=transform)


class DomainFolders(torch.utils.data.Dataset):
    """Several image folders with the same classes, one per domain (PACS: ``root/<domain>/<class>/<image>``).

    Items are ``(image, label, domain_id)``; ``domain_id`` indexes :attr:`domains`. :attr:`targets` and
    :attr:`domain_ids` hold all labels and domain ids as ``(N,)`` int64 tensors (for targets and evaluation).

    Example::

        >>> pacs = DomainFolders("~/data/PACS", ["photo", "art_painting", "cartoon", "sketch"], simclr_transform(64))
        >>> image, label, domain = pacs[0]
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        domains: Optional[Sequence[str]] = None,
        transform: Optional[Callable] = None,
    ):
        root = Path(root).expanduser()
        layout = "root/<domain>/<class_name>/<image>"
        if not root.is_dir():
            raise FileNotFoundError(f"root: {str(root)!r} is not a folder; expected the layout {layout}")
        if domains is None:
            domains = sorted(d.name for d in root.iterdir() if d.is_dir())
        if not domains:
            raise FileNotFoundError(f"root: no domain folders under {str(root)!r}; expected the layout {layout}")
        self.domains = tuple(domains)
        self.parts = []
        for domain in self.domains:
            _check_image_folder(root / domain, f"{root}/{domain}")
            self.parts.append(load_image_folder(root / domain, transform))
        self.classes = self.parts[0].classes
        for domain, part in zip(self.domains, self.parts):
            if part.classes != self.classes:
                raise ValueError(
                    f"domains: {domain!r} has classes {part.classes}, expected the same as {self.domains[0]!r}: "
                    f"{self.classes}"
                )
        self.targets = torch.tensor([t for part in self.parts for t in part.targets], dtype=torch.int64)
        self.domain_ids = torch.cat(
            [torch.full((len(part),), i, dtype=torch.int64) for i, part in enumerate(self.parts)]
        )
        self._offsets = [0]
        for part in self.parts:
            self._offsets.append(self._offsets[-1] + len(part))

    def __len__(self) -> int:
        return self._offsets[-1]

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index: {index} out of range for {len(self)} items")
        domain = next(i for i in range(len(self.parts)) if index < self._offsets[i + 1])
        image, label = self.parts[domain][index - self._offsets[domain]]
        return image, label, domain


def dataset_to_tensors(dataset) -> tuple[Tensor, Tensor]:
    """All images of an in-memory torchvision dataset (CIFAR, SVHN, STL-10) as ``uint8 (N, C, H, W)`` and labels
    ``(N,)`` int64, without its transform: for batched augmentation on an accelerator (:func:`augment_batch`).
    Convert with ``images.float() / 255``."""
    data = getattr(dataset, "data", None)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    if data is None or labels is None:
        raise TypeError(
            f"dataset: expected an in-memory torchvision dataset with .data and labels, got {type(dataset).__name__}"
        )
    images = torch.as_tensor(data)
    if images.dim() != 4:
        raise ValueError(f"dataset: expected 4-d image data, got shape {tuple(images.shape)}")
    if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):  # CIFAR stores (N, H, W, C)
        images = images.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(labels, dtype=torch.int64)


__all__ = [
    "CIFAR100_COARSE",
    "CIFAR100_COARSE_NAMES",
    "CIFAR100_FINE_NAMES",
    "DIGITS_COLOUR",
    "DIGITS_DOMAINS",
    "DIGITS_NOISE_STD",
    "DIGITS_ROTATION",
    "DomainFolders",
    "TORCHVISION_DATASETS",
    "dataset_to_tensors",
    "digits_domains",
    "expected_files",
    "load_digits_dataset",
    "load_image_folder",
    "load_torchvision_dataset",
    "train_test_split_indices",
]
