"""Time-series classification data: the UEA/UCR problems bundled inside the aeon package (offline, nothing is
ever downloaded) and a generic loader for arrays.

Tensors: series ``X (N, C, T)`` float32; labels ``y (N,)`` int64 in ``0 .. len(classes) - 1`` with
``classes[y[i]]`` the class name of series ``i``. Class names are sorted numerically when they all parse as
numbers (``"1" < "2" < "10"``), else alphabetically (BasicMotions: badminton 0, running 1, standing 2, walking 3).

Bundled problems (aeon 1.x, see :func:`bundled_aeon_datasets`) include BasicMotions (smartwatch accelerometer and
gyroscope, 6 channels: accelerometer x, y, z then gyroscope x, y, z; 4 activities; 40 + 40 series of 100 steps),
GunPoint (1 x 150; 50 + 150), JapaneseVowels (12 channels, unequal lengths 7..29; 270 + 370),
PickupGestureWiimoteZ (1 channel, unequal lengths 29..361; 50 + 50), ArrowHead, ACSF1, OSULeaf, ItalyPowerDemand.

Unequal lengths are made equal (documented per call): ``unequal="pad"`` keeps the first ``length`` steps and pads
shorter series with zeros at the end; ``unequal="resample"`` resamples every series to ``length`` steps
(:func:`~otalign.modalities.timeseries.resampling.resample_length`). ``length`` defaults to the longest series
over both splits, so padding never truncates and both splits share ``T``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .resampling import resample_length

SPLITS: tuple[str, ...] = ("train", "test", "all")
UNEQUAL_MODES: tuple[str, ...] = ("pad", "resample")
#: Channel triads of BasicMotions: (accelerometer x, y, z), (gyroscope x, y, z).
BASICMOTIONS_TRIADS: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (3, 4, 5))


class SeriesDataset(NamedTuple):
    """``X (N, C, T)`` float32, ``y (N,)`` int64 class ids, ``classes``: the class name of each id."""

    X: Tensor
    y: Tensor
    classes: tuple[str, ...]


def _aeon_data_dir() -> Path:
    try:
        import aeon.datasets
    except ImportError as err:
        raise ImportError("the aeon loaders need aeon: pip install 'otalign[timeseries]'") from err
    return Path(aeon.datasets.__file__).resolve().parent / "data"


def _is_classification(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.strip().lower().split()
            if words and words[0] == "@data":
                return False
            if len(words) >= 2 and words[0] == "@classlabel":
                return words[1] == "true"
    return False


def bundled_aeon_datasets() -> tuple[str, ...]:
    """The classification problems whose train and test ``.ts`` files ship inside the installed aeon package
    (sorted). Includes aeon's ``*_eq`` variants (equal-length versions it prepared) where present."""
    root = _aeon_data_dir()
    names = []
    for train in root.glob("*/*_TRAIN.ts"):
        name = train.name[: -len("_TRAIN.ts")]
        if (train.parent / f"{name}_TEST.ts").is_file() and _is_classification(train):
            names.append(name)
    return tuple(sorted(names))


def _bundled_path(name: str, split: str) -> Path:
    available = bundled_aeon_datasets()
    if name not in available:
        raise ValueError(
            f"name: {name!r} is not bundled with the installed aeon, and nothing is downloaded; bundled "
            f"classification problems: {', '.join(available)}"
        )
    return next(_aeon_data_dir().glob(f"*/{name}_{split.upper()}.ts"))


def _read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    from aeon.datasets import load_from_ts_file

    X, y = load_from_ts_file(str(path), return_type="auto")
    series = [np.asarray(s, dtype=np.float64) for s in X]
    return series, np.asarray(y).astype(str)


def _sort_classes(names) -> tuple[str, ...]:
    names = sorted(set(str(n) for n in names))
    try:
        return tuple(sorted(names, key=float))
    except ValueError:
        return tuple(names)


def _equalise(series: Sequence[Tensor], length: int, unequal: str) -> Tensor:
    if unequal == "pad":
        out = series[0].new_zeros(len(series), series[0].shape[0], length)
        for i, s in enumerate(series):
            n = min(s.shape[-1], length)
            out[i, :, :n] = s[:, :n]
        return out
    return torch.stack([resample_length(s, length) for s in series])


def _check_unequal(unequal: str, length: Optional[int]) -> None:
    if unequal not in UNEQUAL_MODES:
        raise ValueError(f"unequal: expected one of {UNEQUAL_MODES}, got {unequal!r}")
    if length is not None and (not isinstance(length, int) or length < 1):
        raise ValueError(f"length: expected an int >= 1 or None, got {length!r}")


def load_aeon_dataset(
    name: str, split: str = "train", *, length: Optional[int] = None, unequal: str = "pad"
) -> SeriesDataset:
    """A UEA/UCR classification problem bundled inside the aeon package, read from its ``.ts`` files (offline).

    Args:
        name: a name from :func:`bundled_aeon_datasets`, e.g. ``"BasicMotions"``, ``"GunPoint"``,
            ``"JapaneseVowels"``, ``"PickupGestureWiimoteZ"``.
        split: ``"train"``, ``"test"`` or ``"all"`` (train then test).
        length: the common length ``T`` for unequal-length problems (default: the longest series over both
            splits). For equal-length problems ``length`` other than ``None`` resamples every series.
        unequal: ``"pad"`` (truncate to ``length``, zero-pad at the end) or ``"resample"``.

    Returns:
        :class:`SeriesDataset` ``(X (N, C, T) float32, y (N,) int64, classes)``; class ids follow the module's
        sorting rule and are the same for every split.

    Raises:
        ValueError: ``name`` is not bundled (the message lists what is); nothing is downloaded.

    Example::

        >>> X, y, classes = load_aeon_dataset("BasicMotions", "train")
        >>> X.shape, classes
        (torch.Size([40, 6, 100]), ('badminton', 'running', 'standing', 'walking'))
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    _check_unequal(unequal, length)
    parts = {s: _read_ts(_bundled_path(name, s)) for s in ("train", "test")}
    classes = _sort_classes(np.concatenate([labels for _, labels in parts.values()]))
    chosen = ("train", "test") if split == "all" else (split,)
    series = [torch.from_numpy(s) for part in chosen for s in parts[part][0]]
    labels = np.concatenate([parts[part][1] for part in chosen])
    lengths = {s.shape[-1] for part in parts.values() for s in part[0]}
    if length is None and len(lengths) > 1:
        length = max(lengths)
    if length is None:
        X = torch.stack(series)
    else:
        X = _equalise(series, length, "pad" if len(lengths) > 1 and unequal == "pad" else "resample")
    index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([index[str(label)] for label in labels], dtype=torch.int64)
    return SeriesDataset(X.to(torch.float32).contiguous(), y, classes)


def from_arrays(
    X: Union[np.ndarray, Tensor, Sequence],
    y: Union[np.ndarray, Tensor, Sequence],
    *,
    classes: Optional[Sequence] = None,
    length: Optional[int] = None,
    unequal: str = "pad",
) -> SeriesDataset:
    """Any labelled series as a :class:`SeriesDataset`.

    Args:
        X: an array or tensor ``(N, C, T)`` or ``(N, T)`` (one channel), or a sequence of ``(C, T_i)`` / ``(T_i,)``
            arrays of possibly different lengths (made equal as :func:`load_aeon_dataset` does; ``length`` defaults
            to the longest).
        y: ``N`` labels of any kind (strings, ints); mapped to ids by ``classes`` order.
        classes: the label values in id order (default: the sorted distinct labels, numerically if possible).

    Example::

        >>> X, y, classes = from_arrays(np.random.randn(10, 3, 50), ["a", "b"] * 5)
    """
    _check_unequal(unequal, length)
    if isinstance(X, (np.ndarray, Tensor)) and np.ndim(X) in (2, 3):
        data = torch.as_tensor(np.asarray(X) if isinstance(X, np.ndarray) else X).to(torch.float64)
        series = list(data.unsqueeze(1) if data.dim() == 2 else data)
    else:
        series = []
        for i, s in enumerate(X):
            s = torch.as_tensor(np.asarray(s, dtype=np.float64))
            if s.dim() not in (1, 2) or s.shape[-1] < 1:
                raise ValueError(f"X: series {i} has shape {tuple(s.shape)}; expected (C, T) or (T,)")
            series.append(s.unsqueeze(0) if s.dim() == 1 else s)
    if not series:
        raise ValueError("X: no series")
    if len({s.shape[0] for s in series}) != 1:
        raise ValueError(f"X: all series need the same number of channels, got {sorted({s.shape[0] for s in series})}")
    labels = [str(v) for v in (y.tolist() if isinstance(y, (np.ndarray, Tensor)) else y)]
    if len(labels) != len(series):
        raise ValueError(f"y: expected {len(series)} labels, got {len(labels)}")
    names = _sort_classes(labels) if classes is None else tuple(str(c) for c in classes)
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"classes: labels {unknown[:5]} are not among classes {names[:10]}")
    lengths = {s.shape[-1] for s in series}
    if length is None and len(lengths) > 1:
        length = max(lengths)
    X = torch.stack(series) if length is None else _equalise(series, length, unequal)
    index = {c: i for i, c in enumerate(names)}
    y = torch.tensor([index[label] for label in labels], dtype=torch.int64)
    return SeriesDataset(X.to(torch.float32).contiguous(), y, names)


def standardize(
    X: Tensor, mean: Optional[Tensor] = None, std: Optional[Tensor] = None, eps: float = 1e-8
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-channel z-scores: ``(X - mean) / std`` with ``mean`` and ``std`` of shape ``(1, C, 1)`` computed over
    series and time unless given (compute them on the training split and pass them for the test split).
    Returns ``(X_standardised, mean, std)``."""
    if not isinstance(X, Tensor) or X.dim() != 3 or not X.is_floating_point():
        raise ValueError(f"X: expected a float tensor (N, C, T), got {getattr(X, 'shape', type(X).__name__)}")
    if mean is None:
        mean = X.mean(dim=(0, 2), keepdim=True)
    if std is None:
        std = X.std(dim=(0, 2), keepdim=True)
    return (X - mean) / std.clamp_min(eps), mean, std


def series_length_range(name: str) -> tuple[int, int]:
    """The shortest and longest series length of a bundled problem over both splits (before equalising)."""
    lengths = [s.shape[-1] for split in ("train", "test") for s in _read_ts(_bundled_path(name, split))[0]]
    return min(lengths), max(lengths)


__all__ = [
    "BASICMOTIONS_TRIADS",
    "SPLITS",
    "SeriesDataset",
    "UNEQUAL_MODES",
    "bundled_aeon_datasets",
    "from_arrays",
    "load_aeon_dataset",
    "series_length_range",
    "standardize",
]
