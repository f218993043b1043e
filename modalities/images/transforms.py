"""Two-view augmentations for images (torchvision.transforms.v2) and corruptions done right.

Conventions: images are float tensors in ``[0, 1]``, one ``(C, H, W)`` or a batch ``(B, C, H, W)``. The SimCLR
pipelines also accept PIL images and uint8 tensors (they start by converting to float ``[0, 1]``) and always return
plain float32 tensors. Randomness comes from torch's global generator, so ``torch.manual_seed(s)`` fixes the views;
:func:`augment_batch` takes an explicit ``torch.Generator`` instead.

The transforms defined here (:class:`GaussianNoise`, :class:`Brightness`, :class:`RandomErase`,
:class:`RandomAffine`, :class:`BatchCompose`) are *batched*: given ``(B, C, H, W)`` they draw independent random
parameters per image in one vectorised call (fast for tiny images and on accelerators). torchvision's v2
transforms draw one set of parameters per call, so :func:`augment_batch` loops over the batch for them.

Corrections of the GCA authors' defects (docs/maths.md, section 5): :class:`Brightness` shifts the HSV value on the
``[0, 1]`` scale (defect 8 treated ``[0, 1]`` tensors as 0..255), and :func:`large_erase` erases one large rectangle
in every image, always (defect 9 erased nothing during pre-training).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..seeding import seeded
from ..views import TwoViews as SharedTwoViews

#: Gaussian-noise std for severities 1..5 on the ``[0, 1]`` scale (the ImageNet-C ``gaussian_noise`` levels).
NOISE_STD: tuple[float, ...] = (0.08, 0.12, 0.18, 0.26, 0.38)
#: HSV-value shift for severities 1..5 (the ImageNet-C ``brightness`` levels).
BRIGHTNESS_SHIFT: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


def _severity(severity: int, table: Sequence[float]) -> float:
    if not isinstance(severity, int) or not 1 <= severity <= len(table):
        raise ValueError(f"severity: expected an int in 1..{len(table)}, got {severity!r}")
    return table[severity - 1]


def _check_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"images: expected a float tensor (C, H, W) or (B, C, H, W), got {type(images).__name__}")
    if images.dim() not in (3, 4) or not images.is_floating_point():
        raise ValueError(
            f"images: expected a float tensor (C, H, W) or (B, C, H, W) in [0, 1], got {images.dtype} "
            f"of shape {tuple(images.shape)}"
        )
    return images.as_subclass(Tensor)


class BatchTransform(nn.Module):
    """Base class of the batched transforms: ``forward`` takes ``(C, H, W)`` or ``(B, C, H, W)`` float tensors in
    ``[0, 1]`` and calls :meth:`apply` on a batch; subclasses draw per-image random parameters there."""

    batched = True

    def forward(self, images: Tensor) -> Tensor:
        images = _check_images(images)
        if images.dim() == 3:
            return self.apply(images.unsqueeze(0))[0]
        return self.apply(images)

    def apply(self, images: Tensor) -> Tensor:
        raise NotImplementedError


class GaussianNoise(BatchTransform):
    """Add i.i.d. Gaussian noise and clip to ``[0, 1]``: a corruption for one view.

    Args:
        severity: 1..5, the std from :data:`NOISE_STD` (0.08 .. 0.38).
        std: an explicit std (overrides ``severity``).

    Example::

        >>> noisy = GaussianNoise(severity=5)(torch.rand(3, 32, 32))
    """

    def __init__(self, severity: int = 3, *, std: Optional[float] = None):
        super().__init__()
        if std is None:
            std = _severity(severity, NOISE_STD)
        elif not std >= 0:
            raise ValueError(f"std: must be >= 0, got {std}")
        self.std = float(std)

    def apply(self, images: Tensor) -> Tensor:
        return (images + self.std * torch.randn_like(images)).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"std={self.std:g}"


class Brightness(BatchTransform):
    """Raise the HSV value (brightness) by ``shift`` on the ``[0, 1]`` scale, keeping hue and saturation.

    For a pixel with value ``V = max(R, G, B) > 0`` the new value is ``min(V + shift, 1)`` and every channel is
    scaled by ``V' / V`` (that keeps hue and saturation); black pixels become grey ``shift``. The output stays in
    ``[0, 1]``. Works for 1 or 3 channels (one channel: ``min(x + shift, 1)``).

    Args:
        severity: 1..5, the shift from :data:`BRIGHTNESS_SHIFT` (0.1 .. 0.5).
        shift: an explicit shift in ``[-1, 1]`` (negative darkens).
    """

    def __init__(self, severity: int = 3, *, shift: Optional[float] = None):
        super().__init__()
        if shift is None:
            shift = _severity(severity, BRIGHTNESS_SHIFT)
        elif not -1 <= shift <= 1:
            raise ValueError(f"shift: expected a number in [-1, 1], got {shift}")
        self.shift = float(shift)

    def apply(self, images: Tensor) -> Tensor:
        value = images.amax(dim=-3, keepdim=True)
        new_value = (value + self.shift).clamp(0.0, 1.0)
        scaled = images * (new_value / value.clamp_min(1e-12))
        return torch.where(value > 0, scaled, new_value.expand_as(images)).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"shift={self.shift:g}"


class RandomErase(BatchTransform):
    """Replace one random rectangle of each image by ``value``, with probability ``p`` per image.

    The rectangle covers a fraction of the image area drawn uniformly from ``scale``, with aspect ratio
    (height / width) drawn log-uniformly from ``ratio``; its sides are clipped to the image, so it always erases
    (unlike rejection sampling, which may give up and erase nothing).

    Args:
        scale: area fraction range, within ``(0, 1]``.
        ratio: aspect-ratio range, > 0.
        value: fill value.
        p: probability of erasing each image.
    """

    def __init__(self, scale=(0.02, 0.33), ratio=(0.3, 3.3), value: float = 0.0, p: float = 0.5):
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale: expected 0 < low <= high <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio: expected 0 < low <= high, got {ratio}")
        if not 0 <= p <= 1:
            raise ValueError(f"p: expected a probability, got {p}")
        self.scale, self.ratio, self.value, self.p = tuple(scale), tuple(ratio), float(value), float(p)

    def apply(self, images: Tensor) -> Tensor:
        b, _, h, w = images.shape
        device = images.device
        area = torch.empty(b, device=device).uniform_(*self.scale) * (h * w)
        log_ratio = torch.empty(b, device=device).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]))
        eh = (area * log_ratio.exp()).sqrt().round().clamp(1, h)
        ew = (area / log_ratio.exp()).sqrt().round().clamp(1, w)
        top = (torch.rand(b, device=device) * (h - eh + 1)).floor()
        left = (torch.rand(b, device=device) * (w - ew + 1)).floor()
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        inside = (
            (rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1))
            & (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1))
        )
        inside = inside & (torch.rand(b, device=device) < self.p).view(b, 1, 1)
        return images.masked_fill(inside.unsqueeze(1), self.value)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, ratio={self.ratio}, value={self.value:g}, p={self.p:g}"


class RandomAffine(BatchTransform):
    """Per-image random rotation, isotropic scaling and translation (bilinear, zeros outside the image).

    Args:
        degrees: rotation drawn uniformly from ``[-degrees, degrees]``.
        translate: shift drawn uniformly from ``[-translate, translate]`` of the image size, per axis.
        scale: zoom factor range.
    """

    def __init__(self, degrees: float = 10.0, translate: float = 0.125, scale=(0.9, 1.1)):
        super().__init__()
        if degrees < 0 or translate < 0 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"degrees, translate, scale: invalid ({degrees}, {translate}, {scale})")
        self.degrees, self.translate, self.scale = float(degrees), float(translate), tuple(scale)

    def apply(self, images: Tensor) -> Tensor:
        b = images.shape[0]
        device, dtype = images.device, images.dtype
        angle = torch.empty(b, device=device, dtype=dtype).uniform_(-self.degrees, self.degrees) * (math.pi / 180)
        zoom = torch.empty(b, device=device, dtype=dtype).uniform_(*self.scale)
        shift = torch.empty(b, 2, device=device, dtype=dtype).uniform_(-self.translate, self.translate) * 2
        cos, sin = angle.cos() / zoom, angle.sin() / zoom  # the grid maps output to input: inverse zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"degrees={self.degrees:g}, translate={self.translate:g}, scale={self.scale}"


class BatchCompose(BatchTransform):
    """Apply batched transforms in sequence (itself batched)."""

    def __init__(self, transforms: Sequence[BatchTransform]):
        super().__init__()
        for t in transforms:
            if not getattr(t, "batched", False):
                raise TypeError(f"transforms: {type(t).__name__} is not a batched transform; use v2.Compose")
        self.transforms = nn.ModuleList(transforms)

    def apply(self, images: Tensor) -> Tensor:
        for t in self.transforms:
            images = t.apply(images)
        return images


# --------------------------------------------------------------------------------------------------- pipelines
def as_float_image():
    """PIL image, uint8 or float tensor -> float32 tensor in ``[0, 1]`` (``(C, H, W)``, or batched)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()])


def simclr_transform(size: int = 32, *, crop_scale: tuple[float, float] = (0.08, 1.0)):
    """The SimCLR CIFAR augmentation: random resized crop (area ``crop_scale``), horizontal flip, colour jitter
    (0.4, 0.4, 0.4, 0.1) with p = 0.8, grayscale with p = 0.2. Input: PIL, uint8 or float ``(C, H, W)``;
    output: float32 ``(C, size, size)`` in ``[0, 1]``. One or three channels.

    Example::

        >>> views = TwoViews(simclr_transform(32))(image)
    """
    from torchvision.transforms import v2

    if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(f"crop_scale: expected 0 < low <= high <= 1, got {crop_scale}")
    return v2.Compose([
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomResizedCrop(size, scale=crop_scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.ToPureTensor(),
    ])


def strong_crop(size: int = 32, scale: tuple[float, float] = (0.02, 0.2)):
    """SimCLR with small crops: each view keeps only 2-20 % of the image area (a strong augmentation)."""
    return simclr_transform(size, crop_scale=scale)


def large_erase(size: int = 32, scale: tuple[float, float] = (0.25, 0.5), value: float = 0.0):
    """SimCLR followed by erasing one rectangle of 25-50 % of the area in every view, always (p = 1)."""
    from torchvision.transforms import v2

    return v2.Compose([simclr_transform(size), RandomErase(scale=scale, ratio=(0.5, 2.0), value=value, p=1.0)])


def brightness(size: int = 32, severity: int = 3):
    """SimCLR followed by a :class:`Brightness` shift of the given severity (on the ``[0, 1]`` scale)."""
    from torchvision.transforms import v2

    return v2.Compose([simclr_transform(size), Brightness(severity)])


def digits_transform(
    degrees: float = 10.0, translate: float = 0.125, scale=(0.9, 1.1), noise_std: float = 0.05
) -> BatchCompose:
    """Augmentation for 8 x 8 digits: a small random affine map (rotation up to ``degrees``, shift up to
    ``translate`` of the side, i.e. one pixel, zoom in ``scale``) and light Gaussian noise, clipped to ``[0, 1]``.
    No resized crop: cropping an 8 x 8 digit and resizing it back destroys it. Batched.

    Example::

        >>> images, labels, _ = load_digits_dataset()
        >>> v0, v1 = TwoViews(digits_transform()).batch(images)
    """
    return BatchCompose([RandomAffine(degrees, translate, scale), GaussianNoise(std=noise_std)])


# --------------------------------------------------------------------------------------------------- batching
def augment_batch(transform: Callable, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Apply ``transform`` to every image of ``images (B, C, H, W)`` with independent randomness.

    Batched transforms (attribute ``batched = True``) get the whole batch in one call; others are applied image by
    image and stacked. With ``generator`` the result depends only on the generator's state (the global RNG is
    left untouched); without it, on torch's global seed.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images: expected a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    with seeded(generator, images.device):
        if getattr(transform, "batched", False):
            return transform(images)
        return torch.stack([transform(image) for image in images])


def corrupt_subset(
    images: Tensor, corruption: Callable, fraction: float, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """Corrupt ``round(fraction * B)`` randomly chosen images of ``images (B, C, H, W)``.

    Returns the new batch and the bool mask ``(B,)`` of corrupted images (e.g. for a per-view quality in
    ``otalign.targets.weighted``).
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction: expected a number in [0, 1], got {fraction}")
    b = images.shape[0]
    chosen = torch.randperm(b, generator=generator)[: round(fraction * b)].to(images.device)
    mask = torch.zeros(b, dtype=torch.bool, device=images.device)
    mask[chosen] = True
    out = images.clone()
    if chosen.numel():
        out[mask] = augment_batch(corruption, images[mask], generator)
    return out, mask


class TwoViews(SharedTwoViews):
    """Two augmented views of one image: ``(first(x), second(x))``; ``second`` defaults to ``first`` (an
    independent draw). Pass e.g. ``v2.Compose([t, GaussianNoise(5)])`` as ``second`` to corrupt the second view.

    Call it on one image (a dataset transform): the views come from torch's global RNG, or, given a ``generator``,
    each view from a seed drawn from it (:func:`otalign.modalities.seeding.seeded`). Use :meth:`batch` on a
    ``(B, C, H, W)`` tensor for independent draws per image. The modalities' shared
    :class:`otalign.modalities.views.TwoViews`, for transforms that know only the global RNG.

    Example::

        >>> two = TwoViews(simclr_transform(32), v2.Compose([simclr_transform(32), GaussianNoise(4)]))
        >>> v0, v1 = two(image)
    """

    def draw(self, transform: Callable, image, generator: Optional[torch.Generator]) -> Tensor:
        """One view of ``image`` (PIL or tensor): ``transform(image)`` with the global RNG seeded from
        ``generator`` (as it is without one)."""
        with seeded(generator, getattr(image, "device", torch.device("cpu"))):
            return transform(image)

    def batch(self, images: Tensor, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """Both views of every image of ``images (B, C, H, W)`` (see :func:`augment_batch`)."""
        return augment_batch(self.first, images, generator), augment_batch(self.second, images, generator)


__all__ = [
    "BRIGHTNESS_SHIFT",
    "BatchCompose",
    "BatchTransform",
    "Brightness",
    "GaussianNoise",
    "NOISE_STD",
    "RandomAffine",
    "RandomErase",
    "TwoViews",
    "as_float_image",
    "augment_batch",
    "brightness",
    "corrupt_subset",
    "digits_transform",
    "large_erase",
    "simclr_transform",
    "strong_crop",
]
