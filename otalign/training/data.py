"""What a training run reads: in-memory tensors and a batched two-view maker, per modality and dataset.

The core never imports a modality at import time (DESIGN.md: modalities depend on the core, not the reverse):
:func:`load_data` and :func:`build_networks` look the modality's adapter up by name in :data:`ADAPTERS` and import
it only then.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .config import Config

#: ``(x, generator) -> (x0, x1)``: two views of a batch ``x (B, ...)``; ``generator`` is a CPU ``torch.Generator``
#: that drives all of the views' randomness.
ViewMaker = Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]]

#: modality name -> module that implements ``load(config, device) -> TensorData`` and
#: ``networks(config, in_shape) -> (encoder, projector)``.
ADAPTERS: dict[str, str] = {
    "images": "otalign.training.images",
    "timeseries": "otalign.training.timeseries",
    "text": "otalign.training.text",
}


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class TensorData:
    """A dataset held as tensors.

    Attributes:
        train_x, test_x: stored samples ``(N, ...)`` (e.g. uint8 images); ``inputs(x)`` turns a batch of them into
            the encoder's input (float).
        train_y, test_y: ``(N,)`` int64 labels (used by evaluation and label-based methods only).
        views: the :data:`ViewMaker` applied to stored samples during training (its output is encoder input).
        in_shape: the shape of one encoder input, e.g. ``(1, 8, 8)``.
        inputs: stored batch -> encoder input, without augmentation (identity by default).
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    views: ViewMaker
    in_shape: tuple[int, ...]
    inputs: Callable[[Tensor], Tensor] = _identity

    def __post_init__(self) -> None:
        for x, y, split in ((self.train_x, self.train_y, "train"), (self.test_x, self.test_y, "test")):
            if x.shape[0] != y.shape[0] or y.dim() != 1:
                raise ValueError(f"{split}_x, {split}_y: expected (N, ...) and (N,), got {tuple(x.shape)}, "
                                 f"{tuple(y.shape)}")


def _adapter(modality: str):
    if modality not in ADAPTERS:
        raise ValueError(f"modality: unknown {modality!r}; expected one of {sorted(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[modality])


def load_data(config: Config, device: torch.device) -> TensorData:
    """The :class:`TensorData` of ``config.dataset`` in ``config.modality`` (views as the config asks: corruption
    severity, view, fraction), optionally cut to ``config.subset`` training samples."""
    data = _adapter(config.modality).load(config, device)
    if config.subset:
        keep = min(config.subset, data.train_x.shape[0])
        data = TensorData(data.train_x[:keep], data.train_y[:keep], data.test_x, data.test_y, data.views,
                          data.in_shape, data.inputs)
    return data


def build_networks(config: Config, in_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``(encoder, projector)`` of ``config.encoder`` for inputs of shape ``in_shape``; the encoder has a
    ``feature_dim`` attribute, the projector maps it to ``config.projection_dim``."""
    return _adapter(config.modality).networks(config, in_shape)


def stratified_split(labels: Tensor, test_fraction: float = 0.25, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Sorted ``(train, test)`` index tensors: in every class, ``round(test_fraction * count)`` samples (drawn with
    ``seed``) go to the test split. ``labels`` is ``(N,)``."""
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(f"labels: expected a non-empty (N,) tensor, got shape {tuple(labels.shape)}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction!r}")
    labels = labels.cpu()
    draw = torch.Generator().manual_seed(seed)
    test = []
    for value in torch.unique(labels):
        members = torch.nonzero(labels == value).flatten()
        members = members[torch.randperm(members.numel(), generator=draw)]
        test.append(members[: round(test_fraction * members.numel())])
    is_test = torch.zeros(labels.numel(), dtype=torch.bool)
    is_test[torch.cat(test)] = True
    return torch.nonzero(~is_test).flatten(), torch.nonzero(is_test).flatten()
