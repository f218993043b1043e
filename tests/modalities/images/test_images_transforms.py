"""Tests of otalign.modalities.images.transforms: shapes, ranges, seeding, and that corruptions do what they say."""

import colorsys
import math

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
from torchvision.transforms import v2  # noqa: E402

from otalign.modalities.images import transforms as T  # noqa: E402


def rand_image(c=3, h=32, w=32, seed=0):
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed))


PIPELINES = {
    "simclr": lambda: T.simclr_transform(32),
    "strong_crop": lambda: T.strong_crop(32),
    "large_erase": lambda: T.large_erase(32),
    "brightness": lambda: T.brightness(32, severity=4),
    "noise": lambda: T.GaussianNoise(3),
    "brightness_only": lambda: T.Brightness(2),
    "erase": lambda: T.RandomErase(p=1.0),
    "affine": lambda: T.RandomAffine(),
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_output_shape_dtype_range_and_seeding(name):
    transform = PIPELINES[name]()
    image = rand_image()
    torch.manual_seed(0)
    a = transform(image)
    torch.manual_seed(0)
    b = transform(image)
    torch.manual_seed(1)
    c = transform(image)
    assert type(a) is torch.Tensor and a.dtype == torch.float32 and a.shape == (3, 32, 32)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    if name != "brightness_only":  # the only deterministic one
        assert not torch.equal(a, c)


def test_simclr_accepts_pil_uint8_and_one_channel():
    from PIL import Image

    array = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    out = T.simclr_transform(24)(Image.fromarray(array))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32 and out.max() <= 1
    out = T.simclr_transform(24)(torch.from_numpy(array).permute(2, 0, 1))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32 and out.max() <= 1
    out = T.simclr_transform(16)(rand_image(c=1))
    assert out.shape == (1, 16, 16)


def test_simclr_and_strong_crop_parameters():
    def crop_of(pipeline):
        return next(t for t in pipeline.transforms if isinstance(t, v2.RandomResizedCrop))

    assert tuple(crop_of(T.simclr_transform()).scale) == (0.08, 1.0)
    assert max(crop_of(T.strong_crop()).scale) <= 0.25


@pytest.mark.parametrize("transform", [T.digits_transform(), T.GaussianNoise(2), T.RandomErase(p=1.0)])
def test_batched_transforms_draw_per_image(transform):
    batch = rand_image(1, 8, 8).expand(6, 1, 8, 8).contiguous()  # six copies of one image
    out = transform(batch)
    assert out.shape == batch.shape and out.min() >= 0 and out.max() <= 1
    assert all(not torch.equal(out[0], out[i]) for i in range(1, 6))


def test_augment_batch_generator_is_reproducible_and_leaves_global_rng():
    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for transform in (T.simclr_transform(16), T.digits_transform()):
        state = torch.get_rng_state()
        a = T.augment_batch(transform, images, torch.Generator().manual_seed(3))
        b = T.augment_batch(transform, images, torch.Generator().manual_seed(3))
        c = T.augment_batch(transform, images, torch.Generator().manual_seed(4))
        assert torch.equal(torch.get_rng_state(), state)
        assert a.shape == (5, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
        assert not torch.equal(a[0], a[1])


# ------------------------------------------------------------------------------------------------ corruptions
def test_gaussian_noise_severity_ordering_and_closed_form():
    grey = torch.full((1, 3, 64, 64), 0.5)
    torch.manual_seed(0)
    deviations = [(T.GaussianNoise(s)(grey) - grey).abs().mean().item() for s in range(1, 6)]
    assert all(a < b for a, b in zip(deviations, deviations[1:]))
    # severity 1 (std 0.08) is not clipped around 0.5: E|N(0, s)| = s sqrt(2 / pi)
    assert deviations[0] == pytest.approx(0.08 * math.sqrt(2 / math.pi), rel=0.03)
    with pytest.raises(ValueError, match="severity"):
        T.GaussianNoise(6)


def test_brightness_matches_hsv_reference_and_stays_in_range():
    image = rand_image(3, 6, 6, seed=2)
    image[:, 0, 0] = 0.0  # a black pixel
    image[:, 1, 1] = 1.0  # a white pixel
    for severity in range(1, 6):
        shift = T.BRIGHTNESS_SHIFT[severity - 1]
        out = T.Brightness(severity)(image)
        assert out.min() >= 0 and out.max() <= 1
        for i in range(6):
            for j in range(6):
                h, s, v = colorsys.rgb_to_hsv(*image[:, i, j].tolist())
                expected = colorsys.hsv_to_rgb(h, s, min(v + shift, 1.0))
                np.testing.assert_allclose(out[:, i, j].numpy(), expected, atol=1e-5)
    means = [T.Brightness(s)(image).mean().item() for s in range(1, 6)]
    assert all(a < b for a, b in zip(means, means[1:])) and means[0] > image.mean().item()


def test_brightness_pipeline_is_not_near_black():
    torch.manual_seed(0)
    views = torch.stack([T.brightness(32, severity=1)(rand_image(seed=k)) for k in range(8)])
    torch.manual_seed(0)
    plain = torch.stack([T.simclr_transform(32)(rand_image(seed=k)) for k in range(8)])
    torch.testing.assert_close(views, T.Brightness(1)(plain))
    assert views.mean() > plain.mean() > 0.3


def test_large_erase_really_erases_a_large_rectangle():
    image = 0.4 + 0.2 * rand_image()  # no zero pixels before erasing, and colour jitter keeps it positive
    transform = T.large_erase(32)
    torch.manual_seed(0)
    for _ in range(20):
        zero = (transform(image) == 0).all(0)
        fraction = zero.float().mean().item()
        assert 0.2 <= fraction <= 0.56
        rows, cols = torch.nonzero(zero, as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box.item() == zero.sum().item()  # one rectangle


def test_random_erase_probability():
    images = torch.rand(50, 3, 8, 8) + 0.1
    assert torch.equal(T.RandomErase(p=0.0)(images), images)
    erased = (T.RandomErase(p=1.0, scale=(0.1, 0.2))(images) == 0).flatten(1).any(1)
    assert erased.all()


def test_corrupt_subset_marks_and_changes_only_chosen_images():
    images = torch.full((10, 1, 8, 8), 0.5)
    out, mask = T.corrupt_subset(images, T.GaussianNoise(5), 0.5, torch.Generator().manual_seed(0))
    assert mask.sum() == 5
    assert torch.equal(out[~mask], images[~mask])
    assert all(not torch.equal(out[i], images[i]) for i in torch.nonzero(mask).flatten())


# ------------------------------------------------------------------------------------------------ digits, two views
def test_digits_transform_keeps_digits_recognisable():
    sklearn = pytest.importorskip("sklearn.datasets")
    digits = sklearn.load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target)
    train, test = images[:1200], images[1200:1500]

    def nn_accuracy(views):
        nearest = torch.cdist(views.flatten(1), train.flatten(1)).argmin(1)
        return (labels[:1200][nearest] == labels[1200:1500]).float().mean().item()

    generator = torch.Generator().manual_seed(0)
    clean = nn_accuracy(test)
    ours = nn_accuracy(T.augment_batch(T.digits_transform(), test, generator))
    crop = nn_accuracy(T.augment_batch(v2.RandomResizedCrop(8, scale=(0.08, 1.0)), test, generator))
    # pixel-space nearest neighbours are not shift invariant, so a one-pixel shift costs accuracy; a resized crop
    # to 8 px destroys far more; without the shift the digits stay as recognisable as the clean ones
    assert ours > 0.6 and ours > crop + 0.15
    unshifted = nn_accuracy(T.augment_batch(T.digits_transform(translate=0.0), test, generator))
    assert unshifted > clean - 0.05
    assert not torch.equal(T.digits_transform()(test), test)


def test_two_views():
    image = rand_image()
    torch.manual_seed(0)
    v0, v1 = T.TwoViews(T.simclr_transform(32))(image)
    assert v0.shape == v1.shape == (3, 32, 32) and not torch.equal(v0, v1)
    batch = torch.full((4, 1, 8, 8), 0.5)
    clean = T.TwoViews(T.digits_transform(noise_std=0.0, degrees=0.0, translate=0.0, scale=(1.0, 1.0)))
    v0, v1 = clean.batch(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v0, batch)  # the identity map
    corrupted = T.TwoViews(clean.first, T.BatchCompose([clean.first, T.GaussianNoise(5)]))
    v0, v1 = corrupted.batch(batch)
    assert (v1 - batch).abs().mean() > 0.2 > (v0 - batch).abs().mean()
    with pytest.raises(TypeError, match="first"):
        T.TwoViews(3)


def test_two_views_keep_the_stream_of_their_transforms():
    """A view pair is what the transforms draw in turn: from the global RNG on one image, from a seed per view
    drawn from the generator (augment_batch) on a batch; a generator on one image fixes both views."""
    image, batch = rand_image(), torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    first = T.simclr_transform(32)
    two = T.TwoViews(first)
    torch.manual_seed(4)
    v0, v1 = two(image)
    torch.manual_seed(4)
    assert torch.equal(v0, first(image)) and torch.equal(v1, first(image))
    a = two(image, torch.Generator().manual_seed(2))
    b = two(image, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], a[1])
    digits = T.TwoViews(T.digits_transform(), T.BatchCompose([T.digits_transform(), T.GaussianNoise(5)]))
    w0, w1 = digits.batch(batch, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(w0, T.augment_batch(digits.first, batch, g))
    assert torch.equal(w1, T.augment_batch(digits.second, batch, g))
