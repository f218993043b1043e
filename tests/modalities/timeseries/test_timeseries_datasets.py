"""Tests of otalign.modalities.timeseries.datasets: the bundled aeon problems (against aeon's own loaders), the
no-download guard, unequal lengths, the generic array loader and standardisation."""

import numpy as np
import pytest
import torch

from otalign.modalities.timeseries import datasets as D
from otalign.modalities.timeseries.resampling import resample_length

SENSOR_SETS = ("BasicMotions", "PickupGestureWiimoteZ", "GunPoint", "JapaneseVowels")


@pytest.fixture(scope="module")
def aeon():
    return pytest.importorskip("aeon.datasets")


def test_the_four_sets_are_bundled(aeon):
    assert set(SENSOR_SETS) <= set(D.bundled_aeon_datasets())


def test_basicmotions_train_split_matches_aeon(aeon):
    X, y, classes = D.load_aeon_dataset("BasicMotions", "train")
    assert X.shape == (40, 6, 100) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert classes == tuple(sorted(classes)) and len(classes) == 4
    ref_X, ref_y = aeon.load_basic_motions(split="train")
    assert torch.equal(X, torch.from_numpy(ref_X).float())
    assert [classes[i] for i in y.tolist()] == [str(v) for v in ref_y]
    assert torch.bincount(y).tolist() == [10, 10, 10, 10]


def test_all_split_is_train_then_test(aeon):
    train = D.load_aeon_dataset("GunPoint", "train")
    test = D.load_aeon_dataset("GunPoint", "test")
    both = D.load_aeon_dataset("GunPoint", "all")
    assert train.X.shape == (50, 1, 150) and test.X.shape == (150, 1, 150)
    assert torch.equal(both.X, torch.cat([train.X, test.X])) and torch.equal(both.y, torch.cat([train.y, test.y]))
    assert train.classes == test.classes == ("1", "2")


def test_unbundled_name_raises_without_downloading(aeon, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    with pytest.raises(ValueError, match="not bundled.*BasicMotions"):
        D.load_aeon_dataset("ECG200")
    with pytest.raises(ValueError, match="split"):
        D.load_aeon_dataset("BasicMotions", "validation")
    with pytest.raises(ValueError, match="unequal"):
        D.load_aeon_dataset("BasicMotions", unequal="crop")


def test_japanese_vowels_are_zero_padded_to_the_longest(aeon):
    X, y, classes = D.load_aeon_dataset("JapaneseVowels", "train")
    low, high = D.series_length_range("JapaneseVowels")
    ref_X, ref_y = aeon.load_japanese_vowels(split="train")
    assert (low, high) == (min(s.shape[1] for s in ref_X), 29)
    assert X.shape == (270, 12, high) and len(classes) == 9
    for i in (0, 1, 100, 269):
        n = ref_X[i].shape[1]
        assert torch.equal(X[i, :, :n], torch.from_numpy(ref_X[i]).float())
        assert (X[i, :, n:] == 0).all()
    assert [classes[i] for i in y.tolist()] == [str(v) for v in ref_y]
    short = D.load_aeon_dataset("JapaneseVowels", "train", length=10)
    assert short.X.shape == (270, 12, 10) and torch.equal(short.X, X[..., :10])


def test_pickup_gesture_resampled_and_numeric_class_order(aeon):
    X, y, classes = D.load_aeon_dataset("PickupGestureWiimoteZ", "test", length=120, unequal="resample")
    assert X.shape == (50, 1, 120)
    assert classes == tuple(str(i) for i in range(1, 11))  # numeric order: "10" last
    ref_X, ref_y = aeon.load_pickup_gesture_wiimoteZ(split="test")
    expected = resample_length(torch.from_numpy(ref_X[3]), 120).float()
    assert torch.allclose(X[3], expected, atol=1e-6)
    assert [classes[i] for i in y.tolist()] == [str(v) for v in ref_y]


def test_from_arrays_unequal_lists_and_label_mapping():
    series = [np.arange(5.0), np.arange(3.0), np.ones((1, 4))]
    X, y, classes = D.from_arrays(series, ["10", "9", "10"])
    assert X.shape == (3, 1, 5) and classes == ("9", "10") and y.tolist() == [1, 0, 1]
    assert torch.equal(X[1, 0], torch.tensor([0.0, 1.0, 2.0, 0.0, 0.0]))
    X, y, classes = D.from_arrays(np.zeros((4, 2, 7)), torch.tensor([3, 1, 3, 2]), classes=[3, 2, 1])
    assert X.shape == (4, 2, 7) and X.dtype == torch.float32 and y.tolist() == [0, 2, 0, 1]
    X, _, _ = D.from_arrays(np.zeros((4, 7)), [0, 1, 0, 1])
    assert X.shape == (4, 1, 7)
    with pytest.raises(ValueError, match="classes"):
        D.from_arrays(np.zeros((2, 3)), ["a", "b"], classes=["a"])
    with pytest.raises(ValueError, match="y"):
        D.from_arrays(np.zeros((2, 3)), ["a"])
    with pytest.raises(ValueError, match="channels"):
        D.from_arrays([np.zeros((1, 3)), np.zeros((2, 3))], ["a", "b"])


def test_standardize_per_channel():
    noise = torch.randn(20, 3, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X = noise * torch.tensor([1.0, 5.0, 0.1], dtype=torch.float64).view(1, 3, 1) + torch.tensor(
        [0.0, -2.0, 7.0], dtype=torch.float64
    ).view(1, 3, 1)
    Z, mean, std = D.standardize(X)
    assert mean.shape == std.shape == (1, 3, 1)
    assert torch.allclose(Z.mean(dim=(0, 2)), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(Z.std(dim=(0, 2)), torch.ones(3, dtype=torch.float64), atol=1e-12)
    Z2, _, _ = D.standardize(X[:5], mean, std)
    assert torch.allclose(Z2, Z[:5])
