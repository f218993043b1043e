"""Atomic checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint is written to a temporary file in the destination's folder and moved over the destination with
``os.replace`` (atomic on POSIX and Windows), so a crash mid-write never leaves a truncated checkpoint: the previous
one stays intact. Only tensors and plain containers (dict, list, str, int, float, bool, None) may be stored.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

import torch


def save_atomic(state: dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` to ``path`` atomically; return the path. On any error the temporary file is removed and
    ``path`` is left as it was."""

    def write(stream) -> None:
        torch.save(state, stream)
        stream.flush()
        os.fsync(stream.fileno())

    return _replace_atomically(Path(path), write, "wb")


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (as :func:`save_atomic`)."""
    return _replace_atomically(Path(path), lambda stream: stream.write(text), "w")


def _replace_atomically(path: Path, write: Callable[[Any], Any], mode: str) -> Path:
    """Run ``write`` on a temporary file in ``path``'s folder, then move it over ``path`` with ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def load(path: Union[str, Path], map_location: Union[str, torch.device, None] = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` with ``weights_only=True`` (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no checkpoint at {str(path)!r}")
    return torch.load(path, map_location=map_location, weights_only=True)
