"""The modality registry: how the trainer finds a modality's data, views and networks without the core knowing any.

A modality lives in its own package and registers a :class:`Modality` when imported. The trainer looks a name up
with :func:`get_modality`, which imports, on first use, the modules that the ``otalign.modalities`` entry-point
group names (how third-party packages add one) and, for a name not registered that way, the module
``otalign.modalities.<name>.training`` (how the modalities shipped with otalign are laid out). The core imports
no modality and keeps no table of them: adding a modality is one folder with a ``training.py`` that calls
:func:`register_modality`.

Example::

    >>> register_modality(Modality("audio", load=load_audio, networks=audio_networks,
    ...                            datasets=("speechcommands",), encoders=("cnn1d",)))
    >>> with_defaults(Config(modality="audio"))   # dataset and encoder default to the modality's first ones
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Callable

from torch import nn

if TYPE_CHECKING:
    import torch

    from .config import Config
    from .data import TensorData

ENTRY_POINT_GROUP = "otalign.modalities"
#: Where the modalities shipped with otalign put their training glue: ``otalign.modalities.<name>.training``.
BUILTIN_PATTERN = "otalign.modalities.{name}.training"


@dataclass(frozen=True)
class Modality:
    """What the trainer needs of one kind of data.

    Attributes:
        name: the ``Config.modality`` value.
        load: ``(config, device) -> TensorData``: the dataset named by ``config.dataset`` with its two-view maker
            (and per-sample metadata such as domains, when the dataset has them).
        networks: ``(config, in_shape) -> (encoder, projector)``; the encoder has a ``feature_dim`` attribute.
        datasets: the dataset names ``load`` accepts; the first is the default.
        encoders: the encoder names ``networks`` accepts; the first is the default.
        description: one line for ``--help``.
    """

    name: str
    load: Callable[["Config", "torch.device"], "TensorData"]
    networks: Callable[["Config", tuple[int, ...]], tuple[nn.Module, nn.Module]]
    datasets: tuple[str, ...]
    encoders: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        for field_name in ("datasets", "encoders"):
            values = getattr(self, field_name)
            if not values or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{field_name}: expected a non-empty tuple of names, got {values!r}")
        if not (callable(self.load) and callable(self.networks)):
            raise TypeError("load, networks: expected callables")

    @property
    def default_dataset(self) -> str:
        return self.datasets[0]

    @property
    def default_encoder(self) -> str:
        return self.encoders[0]


_REGISTRY: dict[str, Modality] = {}


def register_modality(modality: Modality) -> Modality:
    """Make ``modality`` available to the trainer under ``modality.name`` (registering the same name again with
    another definition is an error)."""
    if not isinstance(modality, Modality):
        raise TypeError(f"modality: expected an otalign.training.Modality, got {type(modality).__name__}")
    known = _REGISTRY.get(modality.name)
    if known is not None and known != modality:
        raise ValueError(f"modality: {modality.name!r} is already registered")
    _REGISTRY[modality.name] = modality
    return modality


def get_modality(name: str) -> Modality:
    """The registered modality called ``name`` (importing its package on first use)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"modality: expected a modality name, got {name!r}")
    if name not in _REGISTRY:
        _load_entry_point(name)
    if name not in _REGISTRY:
        _import_builtin(name)
    if name not in _REGISTRY:
        raise ValueError(f"modality: unknown {name!r}; available: {available_modalities()}")
    return _REGISTRY[name]


def with_defaults(config: "Config") -> "Config":
    """``config`` with ``dataset`` and ``encoder`` filled from its modality's defaults where they are ``None`` (the
    modality is looked up, and imported on first use, here); ``config`` itself when both are set. Raises a
    ``ValueError`` naming ``modality`` for an unknown one."""
    if config.dataset is not None and config.encoder is not None:
        return config
    modality = get_modality(config.modality)
    return config.replace(dataset=config.dataset or modality.default_dataset,
                          encoder=config.encoder or modality.default_encoder)


def available_modalities() -> list[str]:
    """Names of the registered modalities and of those the entry points announce (not imported)."""
    return sorted(set(_REGISTRY) | {entry.name for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def _load_entry_point(name: str) -> None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            entry.load()


def _import_builtin(name: str) -> None:
    if not name.isidentifier():
        return
    module = BUILTIN_PATTERN.format(name=name)
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and module.startswith(error.name):
            return  # no such modality package
        raise
