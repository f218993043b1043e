"""Tests of otalign.modalities.images.datasets: digits and its domains, splits, the CIFAR-100 hierarchy, and the
torchvision / image-folder loaders on small fake data written in torchvision's on-disk formats."""

import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from otalign.modalities.images import datasets as D
from otalign.modalities.images.cifar100 import CIFAR100_COARSE, CIFAR100_COARSE_NAMES, CIFAR100_FINE_NAMES


# ------------------------------------------------------------------------------------------------ digits
@pytest.fixture(scope="module")
def sk_digits():
    return pytest.importorskip("sklearn.datasets").load_digits()


def test_digits_clean(sk_digits):
    images, labels, domains = D.load_digits_dataset("clean")
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == domains.shape == (1797,) and labels.dtype == domains.dtype == torch.int64
    assert images.min() == 0 and images.max() == 1
    np.testing.assert_array_equal(images[:, 0].numpy(), sk_digits.images / 16)
    np.testing.assert_array_equal(labels.numpy(), sk_digits.target)
    assert (domains == 0).all()


def test_digits_domain_variants(sk_digits):
    clean = sk_digits.images / 16
    rotated, labels, domains = D.load_digits_dataset("rotated")
    np.testing.assert_allclose(rotated[:, 0].numpy(), np.rot90(clean, k=1, axes=(1, 2)), atol=1e-7)
    assert (domains == D.DIGITS_DOMAINS.index("rotated")).all()
    np.testing.assert_array_equal(labels.numpy(), sk_digits.target)

    coloured, _, _ = D.load_digits_dataset("coloured")
    assert coloured.shape == (1797, 3, 8, 8)
    for c, tint in enumerate(D.DIGITS_COLOUR):
        np.testing.assert_allclose(coloured[:, c].numpy(), clean * tint, atol=1e-6)

    noisy, _, _ = D.load_digits_dataset("noisy", seed=0)
    assert noisy.min() >= 0 and noisy.max() <= 1 and noisy.shape == (1797, 1, 8, 8)
    interior = (clean > 0.3) & (clean < 0.7)  # pixels the clipping rarely touches
    residual = noisy[:, 0].numpy()[interior] - clean[interior]
    assert residual.std() == pytest.approx(D.DIGITS_NOISE_STD, rel=0.1)
    assert torch.equal(noisy, D.load_digits_dataset("noisy", seed=0)[0])
    assert not torch.equal(noisy, D.load_digits_dataset("noisy", seed=1)[0])
    with pytest.raises(ValueError, match="domain"):
        D.load_digits_dataset("inverted")


def test_digits_domains_stack(sk_digits):
    images, labels, domains = D.digits_domains()
    assert images.shape == (4 * 1797, 3, 8, 8)
    assert Counter(domains.tolist()) == {i: 1797 for i in range(4)}
    np.testing.assert_array_equal(labels.numpy(), np.tile(sk_digits.target, 4))
    clean_block = images[:1797]
    assert torch.equal(clean_block[:, 0], clean_block[:, 2])  # grey domains repeated to 3 channels
    _, _, some = D.digits_domains(("noisy", "clean"))
    assert some[0] == D.DIGITS_DOMAINS.index("noisy") and some[-1] == 0
    with pytest.raises(ValueError, match="names"):
        D.digits_domains(("clean", "clean"))


def test_train_test_split_indices():
    train, test = D.train_test_split_indices(100, 0.25, seed=0)
    assert len(test) == 25 and len(train) == 75
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(100))
    again, _ = D.train_test_split_indices(100, 0.25, seed=0)
    other, _ = D.train_test_split_indices(100, 0.25, seed=1)
    assert torch.equal(train, again) and not torch.equal(train, other)
    labels = torch.tensor([0] * 40 + [1] * 60)
    train, test = D.train_test_split_indices(100, 0.25, seed=0, labels=labels)
    assert Counter(labels[test].tolist()) == {0: 10, 1: 15}
    with pytest.raises(ValueError, match="test_fraction"):
        D.train_test_split_indices(10, 1.0)


# ------------------------------------------------------------------------------------------------ CIFAR-100
def test_cifar100_coarse_table():
    assert len(CIFAR100_COARSE) == 100 and len(set(CIFAR100_FINE_NAMES)) == 100
    assert list(CIFAR100_FINE_NAMES) == sorted(CIFAR100_FINE_NAMES) and len(CIFAR100_COARSE_NAMES) == 20
    assert Counter(CIFAR100_COARSE) == {c: 5 for c in range(20)}
    # spot checks against the dataset's published superclass list
    expect = {"apple": "fruit_and_vegetables", "aquarium_fish": "fish", "baby": "people", "bear": "large_carnivores",
              "beaver": "aquatic_mammals", "bicycle": "vehicles_1", "tractor": "vehicles_2", "worm":
              "non-insect_invertebrates", "willow_tree": "trees", "keyboard": "household_electrical_devices"}
    for fine, coarse in expect.items():
        assert CIFAR100_COARSE_NAMES[CIFAR100_COARSE[CIFAR100_FINE_NAMES.index(fine)]] == coarse


# ------------------------------------------------------------------------------------------------ torchvision loaders
def _pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def fake_cifar10(root, per_batch=4):
    rng = np.random.default_rng(0)
    batches = {}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = rng.integers(0, 10, per_batch).tolist()
        _pickle(root / "cifar-10-batches-py" / name, {"data": data, "labels": labels})
        batches[name] = (data, labels)
    _pickle(root / "cifar-10-batches-py" / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return batches


def test_cifar10_from_fake_files(tmp_path):
    pytest.importorskip("torchvision")
    from otalign.modalities.images import as_float_image

    batches = fake_cifar10(tmp_path)
    test = D.load_torchvision_dataset("cifar10", tmp_path, train=False, transform=as_float_image(), verify=False)
    data, labels = batches["test_batch"]
    assert len(test) == 4
    image, label = test[2]
    assert image.shape == (3, 32, 32) and label == labels[2]
    np.testing.assert_allclose(image.numpy(), data[2].reshape(3, 32, 32) / 255, atol=1e-6)
    train = D.load_torchvision_dataset("cifar10", tmp_path, train=True, verify=False)
    assert len(train) == 20
    images, targets = D.dataset_to_tensors(train)
    assert images.dtype == torch.uint8 and images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(images[4].numpy(), batches["data_batch_2"][0][0].reshape(3, 32, 32))
    assert targets.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    with pytest.raises(RuntimeError, match="checksum"):
        D.load_torchvision_dataset("cifar10", tmp_path, train=True)  # verify=True: not the official files


def test_cifar100_from_fake_files(tmp_path):
    pytest.importorskip("torchvision")
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        fine = rng.integers(0, 100, 6).tolist()
        _pickle(tmp_path / "cifar-100-python" / name, {
            "data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), "fine_labels": fine,
            "coarse_labels": [CIFAR100_COARSE[f] for f in fine]})
    _pickle(tmp_path / "cifar-100-python" / "meta", {"fine_label_names": list(CIFAR100_FINE_NAMES),
                                                     "coarse_label_names": list(CIFAR100_COARSE_NAMES)})
    train = D.load_torchvision_dataset("cifar100", tmp_path, verify=False)
    assert len(train) == 6 and train.classes == list(CIFAR100_FINE_NAMES)


def test_svhn_from_fake_file(tmp_path):
    pytest.importorskip("torchvision")
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)  # SVHN's .mat layout: (H, W, C, N), labels 1..10
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    test = D.load_torchvision_dataset("svhn", tmp_path, train=False, verify=False)
    assert len(test) == 5 and [test[i][1] for i in range(5)] == [0, 1, 2, 0, 9]
    images, labels = D.dataset_to_tensors(test)
    np.testing.assert_array_equal(images[1].numpy(), x[..., 1].transpose(2, 0, 1))
    with pytest.raises(FileNotFoundError, match="train_32x32.mat"):
        D.load_torchvision_dataset("svhn", tmp_path, train=True)


def test_stl10_from_fake_files(tmp_path):
    pytest.importorskip("torchvision")
    rng = np.random.default_rng(3)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)  # (N, C, H, W)
    # STL-10 stores each channel column-major: the file holds (N, C, W, H)
    for split in ("train", "test"):
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{split}_y.bin").write_bytes(np.array([1, 5, 10], dtype=np.uint8).tobytes())
    (folder / "unlabeled_X.bin").write_bytes(images[:1].transpose(0, 1, 3, 2).tobytes())
    train = D.load_torchvision_dataset("stl10", tmp_path, train=True, verify=False)
    loaded, labels = D.dataset_to_tensors(train)
    np.testing.assert_array_equal(loaded.numpy(), images)
    assert labels.tolist() == [0, 4, 9]
    assert len(D.load_torchvision_dataset("stl10", tmp_path, split="train+unlabeled", verify=False)) == 4


def test_missing_files_give_a_clear_error(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1") as info:
        D.load_torchvision_dataset("cifar10", tmp_path)
    assert "cifar-10-python.tar.gz" in str(info.value) and "Nothing is downloaded" in str(info.value)
    with pytest.raises(FileNotFoundError, match="stl10_binary/unlabeled_X.bin"):
        D.load_torchvision_dataset("stl10", tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was created or downloaded
    with pytest.raises(ValueError, match="name"):
        D.load_torchvision_dataset("mnist", tmp_path)
    with pytest.raises(ValueError, match="split"):
        D.load_torchvision_dataset("svhn", tmp_path, split="valid")


# ------------------------------------------------------------------------------------------------ image folders
def write_folder(root, classes, per_class=2, size=(10, 12)):
    from PIL import Image

    rng = np.random.default_rng(4)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            array = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            Image.fromarray(array).save(root / c / f"{i}.png")


def test_image_folder(tmp_path):
    pytest.importorskip("torchvision")
    from otalign.modalities.images import as_float_image

    write_folder(tmp_path / "data", ["cat", "dog"])
    dataset = D.load_image_folder(tmp_path / "data", transform=as_float_image())
    assert len(dataset) == 4 and dataset.classes == ["cat", "dog"]
    image, label = dataset[3]
    assert image.shape == (3, 10, 12) and image.dtype == torch.float32 and label == 1
    with pytest.raises(FileNotFoundError, match="<class_name>/<image>"):
        D.load_image_folder(tmp_path / "absent")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no class folder with images"):
        D.load_image_folder(tmp_path / "empty")


def test_domain_folders(tmp_path):
    pytest.importorskip("torchvision")
    write_folder(tmp_path / "pacs" / "photo", ["dog", "horse"], per_class=2)
    write_folder(tmp_path / "pacs" / "sketch", ["dog", "horse"], per_class=3)
    data = D.DomainFolders(tmp_path / "pacs")
    assert data.domains == ("photo", "sketch") and len(data) == 10
    assert data.domain_ids.tolist() == [0] * 4 + [1] * 6
    assert data.targets.tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 1, 1]
    _, label, domain = data[5]
    assert (label, domain) == (0, 1)
    _, label, domain = data[-1]
    assert (label, domain) == (1, 1)
    write_folder(tmp_path / "pacs" / "cartoon", ["dog", "giraffe"], per_class=1)
    with pytest.raises(ValueError, match="cartoon"):
        D.DomainFolders(tmp_path / "pacs")
