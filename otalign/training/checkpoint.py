"""Atomic checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint is written to a temporary file in the destination's folder and moved over the destination with
``os.replace`` (atomic on POSIX and Windows), so a crash mid-write never leaves a truncated checkpoint: the previous
one stays intact. A process killed mid-write (SIGKILL, power loss) leaves its temporary file behind: the next
:func:`save_atomic` to the same destination removes those orphans (only that destination's, never other files). Only
tensors and plain containers (dict, list, str, int, float, bool, None) may be stored.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
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
    remove_orphans(path)
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


def remove_orphans(path: Union[str, Path]) -> list[Path]:
    """Delete the temporary files that interrupted :func:`save_atomic` calls to ``path`` left in its folder (names
    ``.<name>.<8 characters of mkstemp>.tmp``); return them. Other files are never touched."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    removed = []
    for candidate in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        if pattern.fullmatch(candidate.name) and candidate.is_file() and not candidate.is_symlink():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def load(path: Union[str, Path], map_location: Union[str, torch.device, None] = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` with ``weights_only=True`` (no arbitrary unpickling).

    Raises ValueError naming the file when it is missing, empty, truncated, corrupt or not a dict of state."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no checkpoint at {str(path)!r}")
    try:
        with warnings.catch_warnings():  # a non-checkpoint pickle makes torch warn before it fails: the error says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # EOFError, UnpicklingError, RuntimeError (zip archive), ...: all mean "unreadable"
        reason = "it is empty" if path.stat().st_size == 0 else f"truncated or corrupt: {type(error).__name__}"
        raise ValueError(unreadable(path, f"cannot be read ({reason}: {_first_sentence(error)})")) from error
    if not isinstance(state, dict):
        raise ValueError(unreadable(path, f"holds a {type(state).__name__}, not a dict of training state"))
    return state


def unreadable(path: Union[str, Path], what: str) -> str:
    """The message for a checkpoint that cannot be resumed from: what is wrong and the ways out."""
    return (
        f"checkpoint: {str(path)!r} {what}; delete it, use another output folder, or start afresh with "
        f"resume=False (--no-resume)"
    )


def _first_sentence(error: BaseException, limit: int = 100) -> str:
    text = " ".join(str(error).split()) or "no details"
    text = text.split(". ")[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
