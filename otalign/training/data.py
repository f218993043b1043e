"""What a training run reads: in-memory tensors, per-sample metadata and a batched two-view maker.

The data of a run comes from its modality (:mod:`otalign.training.modality`): :func:`load_data` and
:func:`build_networks` look ``config.modality`` up in the registry; the core imports no modality itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from .config import Config
from .modality import get_modality, with_defaults
from .views import ViewMaker


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class TensorData:
    """A dataset held as tensors.

    Attributes:
        train_x, test_x: stored samples ``(N, ...)`` (e.g. uint8 images); ``inputs(x)`` turns a batch of them into
            the encoder's input (float).
        train_y, test_y: ``(N,)`` int64 labels (used by evaluation and label-based targets only).
        views: the :data:`~otalign.training.views.ViewMaker` applied to stored samples during training (its output
            is encoder input).
        in_shape: the shape of one encoder input, e.g. ``(1, 8, 8)``.
        inputs: stored batch -> encoder input, without augmentation (identity by default).
        train_meta, test_meta: named per-sample integer annotations ``(N,)`` besides the label, e.g. ``"domain"``
            (domain-prior targets and per-domain evaluation) or ``"coarse"`` (hierarchical targets).
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    views: ViewMaker
    in_shape: tuple[int, ...]
    inputs: Callable[[Tensor], Tensor] = _identity
    train_meta: dict[str, Tensor] = field(default_factory=dict)
    test_meta: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for x, y, split in ((self.train_x, self.train_y, "train"), (self.test_x, self.test_y, "test")):
            if x.shape[0] != y.shape[0] or y.dim() != 1:
                raise ValueError(f"{split}_x, {split}_y: expected (N, ...) and (N,), got {tuple(x.shape)}, "
                                 f"{tuple(y.shape)}")
        for split, meta, size in (("train", self.train_meta, self.train_x.shape[0]),
                                  ("test", self.test_meta, self.test_x.shape[0])):
            for key, value in meta.items():
                if not isinstance(value, Tensor) or tuple(value.shape) != (size,):
                    got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                    raise ValueError(f"{split}_meta[{key!r}]: expected ({size},) per-sample ids, got {got}")

    @property
    def domains(self) -> tuple[Tensor, Tensor] | None:
        """``(train, test)`` domain ids when the dataset has domains (``"domain"`` metadata), else ``None``."""
        if "domain" in self.train_meta and "domain" in self.test_meta:
            return self.train_meta["domain"], self.test_meta["domain"]
        return None

    def subset(self, keep: Tensor) -> "TensorData":
        """The same data with only the training samples ``keep`` (indices or a bool mask)."""
        meta = {key: value[keep] for key, value in self.train_meta.items()}
        return TensorData(self.train_x[keep], self.train_y[keep], self.test_x, self.test_y, self.views,
                          self.in_shape, self.inputs, meta, self.test_meta)


def load_data(config: Config, device: torch.device) -> TensorData:
    """The :class:`TensorData` of ``config.dataset`` in ``config.modality`` (views as the config asks: corruption
    severity, view, fraction), without the training samples of ``config.held_out_domain``, and optionally cut to
    ``config.subset`` evenly spaced training samples."""
    config = with_defaults(config)
    data = get_modality(config.modality).load(config, device)
    if config.held_out_domain is not None:
        if data.domains is None:
            raise ValueError(f"held_out_domain: dataset {config.dataset!r} has no domains")
        train_domains = data.domains[0]
        if not bool((train_domains == config.held_out_domain).any()):
            known = sorted(torch.unique(train_domains).tolist())
            raise ValueError(f"held_out_domain: no domain {config.held_out_domain} in {config.dataset!r}; "
                             f"domains: {known}")
        data = data.subset(train_domains != config.held_out_domain)
    if config.subset and config.subset < data.train_x.shape[0]:  # evenly spaced: every domain and class stays
        keep = torch.linspace(0, data.train_x.shape[0] - 1, config.subset).round().long()
        data = data.subset(keep.to(data.train_x.device))
    return data


def build_networks(config: Config, in_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``(encoder, projector)`` of ``config.encoder`` for inputs of shape ``in_shape``; the encoder has a
    ``feature_dim`` attribute, the projector maps it to ``config.projection_dim``."""
    config = with_defaults(config)
    return get_modality(config.modality).networks(config, in_shape)


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
