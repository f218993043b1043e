"""What defines a training run, so that a checkpoint is only ever resumed by the run that wrote it.

A run's fingerprint has four parts: ``config`` (every setting that changes the result), ``data`` (the dataset's
name and sizes and a hash of its tensors and metadata), ``target`` (the identity of the target rule: built-in name
and parameters, or a custom callable's name and source hash) and ``code`` (the otalign version). A checkpoint
stores it; resuming with a different fingerprint is an error that names what differs, and so is starting a run in a
folder that holds another run's files.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import Tensor, nn

from .config import Config
from .data import TensorData

#: Settings that may change between a run and its resumption without changing the result.
RESUMABLE_CHANGES = frozenset({"out", "device", "quiet", "resume", "checkpoint_every", "data_root"})


def run_fingerprint(config: Config, data: TensorData, model: nn.Module) -> dict[str, Any]:
    """The fingerprint of training ``model`` on ``data`` with ``config``: ``config`` as a JSON object of the
    settings, ``data``, ``target`` and ``code`` as strings."""
    from .. import __version__

    settings = {key: value for key, value in config.to_dict().items() if key not in RESUMABLE_CHANGES}
    rule = getattr(model, "rule", None)
    return {
        "config": json.loads(json.dumps(settings, sort_keys=True, default=str)),  # as it reads back from JSON
        "data": data_identity(config, data),
        "target": "the method's own" if rule is None else getattr(rule, "identity", repr(rule)),
        "code": f"otalign {__version__}",
    }


def data_identity(config: Config, data: TensorData) -> str:
    """``modality/dataset``, sizes and a short hash of the training and test tensors and metadata."""
    digest = hashlib.sha256()
    for tensor in (data.train_x, data.train_y, data.test_y, *_sorted_values(data.train_meta),
                   *_sorted_values(data.test_meta)):
        _update(digest, tensor)
    meta = ",".join(sorted(data.train_meta))
    return (f"{config.modality}/{config.dataset} train={data.train_x.shape[0]} test={data.test_x.shape[0]} "
            f"meta=[{meta}] sha256={digest.hexdigest()[:16]}")


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (empty when they agree). A saved ``config`` may be a
    JSON string (the format of earlier versions)."""
    found = []
    for part in ("config", "data", "target", "code"):
        old, new = saved.get(part), current.get(part)
        if part == "config":
            old, new = _settings(old), _settings(new)
        if old == new:
            continue
        if part == "config" and isinstance(old, dict) and isinstance(new, dict):
            before, after = old, new
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            found += [f"setting {k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed]
        else:
            found.append(f"{part}: {old!r} -> {new!r}")
    return found


def _settings(config: Any) -> Any:
    if isinstance(config, str):
        try:
            return json.loads(config)
        except json.JSONDecodeError:
            return config
    return config


def _sorted_values(meta: dict[str, Tensor]) -> list[Tensor]:
    return [meta[key] for key in sorted(meta)]


def _update(digest: "hashlib._Hash", tensor: Tensor) -> None:
    flat = tensor.detach().cpu().contiguous()
    digest.update(str((tuple(flat.shape), str(flat.dtype))).encode())
    digest.update(flat.view(-1).view(torch.uint8).numpy().tobytes())
