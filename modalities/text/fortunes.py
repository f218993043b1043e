"""Real offline text from Debian's ``fortunes``: quotes labelled by category.

Files ``/usr/share/games/fortunes/<category>`` hold records separated by lines holding ``%``; the category is the
file name. :data:`EXCLUDED_FORTUNE_CATEGORIES` are left out by default: ``ethnic`` and ``men-women`` (jokes built on
ethnic and gender stereotypes), ``ascii-art`` and ``translate-me`` (pictures and dialect spelling, not prose). The
offensive collection (Debian ``fortunes-off``, an ``off/`` folder) is never read. Texts are lists of strings, labels
``(N,)`` int64 tensors.

Example::

    >>> quotes = load_fortunes(per_category=50)
    >>> quotes.texts[0], quotes.classes[quotes.labels[0]]
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from .labelled import LabelledTexts, cap_per_label

FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: Fortune categories left out by default (see the module docstring).
EXCLUDED_FORTUNE_CATEGORIES: tuple[str, ...] = ("ascii-art", "ethnic", "men-women", "translate-me")
_ATTRIBUTION = re.compile(r"\n\s*--\s.*\Z", re.DOTALL)


def _fortunes_root(root) -> Path:
    root = FORTUNES_DIR if root is None else Path(root).expanduser()
    if not root.is_dir() or not any((root / f"{p.stem}.dat").is_file() for p in root.iterdir() if p.is_file()):
        raise FileNotFoundError(
            f"fortunes: no fortune files (<category> and <category>.dat) under {root}; install the Debian package "
            f"fortunes (apt-get install fortunes) or pass root= the folder holding them"
        )
    return root


def fortune_categories(root: Optional[Union[str, os.PathLike]] = None) -> tuple[str, ...]:
    """All fortune categories present (files with a ``.dat`` index beside them; symlinks such as ``*.u8`` and
    sub-folders such as ``off/`` are ignored), sorted, exclusions not applied."""
    root = _fortunes_root(root)
    return tuple(sorted(
        p.name for p in root.iterdir()
        if p.is_file() and not p.is_symlink() and "." not in p.name and (root / f"{p.name}.dat").is_file()
    ))


def _overstrike(line: str) -> str:
    """What a terminal prints for a line with backspaces: a backspace moves back one column and the next character
    replaces the one there, except that ``_`` (underlining) keeps it."""
    cells: list[str] = []
    column = 0
    for char in line:
        if char == "\b":
            column = max(column - 1, 0)
            continue
        if column == len(cells):
            cells.append(char)
        elif char != "_":
            cells[column] = char
        column += 1
    return "".join(cells)


def read_fortunes(path: Union[str, os.PathLike], strip_attribution: bool = True) -> list[str]:
    """The records of one fortune file, whitespace collapsed to single spaces; lines with terminal overstrike
    (backspaces, for underlining or bold) are reduced to the printed characters; with ``strip_attribution`` a
    final ``-- author`` line is removed."""
    with open(path, encoding="utf-8", errors="replace") as f:
        raw = "\n".join(_overstrike(line) if "\b" in line else line for line in f.read().split("\n"))
    records = []
    for record in re.split(r"^%\s*$", raw, flags=re.MULTILINE):
        if strip_attribution:
            record = _ATTRIBUTION.sub("", record.rstrip())
        text = " ".join(record.split())
        if text:
            records.append(text)
    return records


def load_fortunes(
    categories: Optional[Sequence[str]] = None,
    *,
    exclude: Sequence[str] = EXCLUDED_FORTUNE_CATEGORIES,
    min_count: int = 20,
    max_chars: Optional[int] = None,
    per_category: Optional[int] = None,
    seed: int = 0,
    strip_attribution: bool = True,
    root: Optional[Union[str, os.PathLike]] = None,
) -> LabelledTexts:
    """Fortune quotes labelled by category (the file name).

    Args:
        categories: the categories to read (default: all present, minus ``exclude``).
        exclude: categories left out (default :data:`EXCLUDED_FORTUNE_CATEGORIES`).
        min_count: categories with fewer quotes (after ``max_chars``) are dropped.
        max_chars: drop quotes longer than this many characters.
        per_category: keep at most this many quotes per category (a seeded random choice).
        strip_attribution: remove the final ``-- author`` line of each quote.
        root: the fortunes folder (default ``/usr/share/games/fortunes``).

    Returns:
        :class:`LabelledTexts` with ``classes`` the kept categories (sorted); quotes in category order, then file
        order. With the defaults (Debian ``fortunes`` 1.99.1): 14,440 quotes in 38 categories.

    Raises:
        FileNotFoundError: no fortune files (the message names the Debian package ``fortunes``).

    Example::

        >>> quotes = load_fortunes(per_category=50)
        >>> quotes.texts[0], quotes.classes[quotes.labels[0]]
    """
    root = _fortunes_root(root)
    present = fortune_categories(root)
    if categories is None:
        categories = [c for c in present if c not in set(exclude)]
    missing = [c for c in categories if c not in present]
    if missing:
        raise ValueError(f"categories: not found under {root}: {missing}; present: {present}")
    kept: dict[str, list[str]] = {}
    for category in sorted(categories):
        quotes = read_fortunes(root / category, strip_attribution)
        if max_chars is not None:
            quotes = [q for q in quotes if len(q) <= max_chars]
        if len(quotes) >= min_count:
            kept[category] = quotes
    classes = tuple(kept)
    texts = [q for c in classes for q in kept[c]]
    labels = [i for i, c in enumerate(classes) for _ in kept[c]]
    keep = cap_per_label(labels, per_category, seed)
    return LabelledTexts([texts[i] for i in keep], torch.tensor([labels[i] for i in keep], dtype=torch.int64), classes)


__all__ = [
    "EXCLUDED_FORTUNE_CATEGORIES",
    "FORTUNES_DIR",
    "fortune_categories",
    "load_fortunes",
    "read_fortunes",
]
