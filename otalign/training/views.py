"""The two-view interface shared by every modality: ``views(x, generator) -> (x0, x1)``.

A :class:`PairViews` augments a stored batch twice (independent draws) and then corrupts the views the run asks for
(``view`` = ``"first"``, ``"second"`` or ``"both"``) on a random ``fraction`` of the samples. All randomness comes
from the CPU ``torch.Generator`` passed in, so a run is reproducible and resumes exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

#: ``(x, generator) -> (x0, x1)``: two views of a batch ``x (B, ...)`` (what the trainer calls).
ViewMaker = Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]]
CORRUPT_VIEWS = {"first": (0,), "second": (1,), "both": (0, 1)}


class PairViews:
    """Base of the modalities' view makers. Subclasses implement :meth:`augment` and, if they corrupt views,
    :meth:`corrupt`.

    Args:
        view: which view(s) the corruption applies to: ``"first"``, ``"second"`` or ``"both"``.
        fraction: the fraction of the batch whose chosen view(s) are corrupted, in [0, 1].
    """

    def __init__(self, view: str = "second", fraction: float = 1.0):
        if view not in CORRUPT_VIEWS:
            raise ValueError(f"view: expected 'first', 'second' or 'both', got {view!r}")
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction: expected a value in [0, 1], got {fraction!r}")
        self.view, self.fraction = view, fraction

    def __call__(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        views = list(self.augment(x, generator))
        if self.corrupts:
            for v in CORRUPT_VIEWS[self.view]:
                views[v] = self.corrupt(views[v], generator)
        return views[0], views[1]

    @property
    def corrupts(self) -> bool:
        """Whether this view maker corrupts anything (default: no)."""
        return False

    def augment(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Two independently augmented views of the stored batch ``x``, as encoder input."""
        raise NotImplementedError

    def corrupt(self, batch: Tensor, generator: torch.Generator) -> Tensor:
        """``batch`` (one view) with a random ``fraction`` of its samples corrupted."""
        return batch

    def count(self, size: int) -> int:
        """How many of ``size`` samples are corrupted."""
        return round(self.fraction * size)
