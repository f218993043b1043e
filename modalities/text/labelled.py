"""Labelled text collections: the :class:`LabelledTexts` record the corpus loaders return, and their seeded
per-label cap.

Example::

    >>> data = LabelledTexts(["a", "b", "c"], torch.tensor([0, 1, 1]), ("x", "y"))
    >>> cap_per_label(data.labels.tolist(), 1, seed=0)          # one index per label, in increasing order
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor


class LabelledTexts(NamedTuple):
    """``texts``, ``labels (N,)`` int64, ``classes``: the name of each label id."""

    texts: list[str]
    labels: Tensor
    classes: tuple[str, ...]


def cap_per_label(labels: list[int], per_label: Optional[int], seed: int) -> list[int]:
    """Indices keeping at most ``per_label`` items of each label (a seeded random choice), in increasing order."""
    if per_label is None:
        return list(range(len(labels)))
    if not isinstance(per_label, int) or per_label < 1:
        raise ValueError(f"per_lexfile/per_category: expected an int >= 1 or None, got {per_label!r}")
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for label in sorted(set(labels)):
        members = [i for i, l in enumerate(labels) if l == label]
        chosen = torch.randperm(len(members), generator=generator)[:per_label].tolist()
        kept += [members[j] for j in chosen]
    return sorted(kept)


__all__ = ["LabelledTexts", "cap_per_label"]
