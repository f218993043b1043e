"""The modalities' two-view maker: two augmented views of the same input, drawn one after the other.

:class:`TwoViews` is the one implementation behind ``otalign.modalities.images.TwoViews``,
``otalign.modalities.timeseries.TwoViews`` and ``otalign.modalities.text.TwoViews``. It is a
:class:`otalign.training.PairViews` that corrupts nothing, so it also serves as the trainer's view maker
``views(x, generator) -> (x0, x1)``.

Example::

    >>> from otalign.modalities.timeseries import Jitter, sensor_transform
    >>> views = TwoViews(sensor_transform(), Jitter(0.5))
    >>> v0, v1 = views(torch.randn(32, 6, 100), torch.Generator().manual_seed(0))   # (32, 6, 100) each
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from otalign.training.views import PairViews


class TwoViews(PairViews):
    """Two augmented views of one input ``x``: ``(first(x, generator=g), second(x, generator=g))``.

    The first view is drawn, then the second, from the same generator (or from torch's global RNG when ``g`` is
    ``None``), so a seeded generator fixes both. ``second`` defaults to ``first`` (then the two views are two
    independent draws of the same augmentation); to corrupt one view, pass a ``second`` that corrupts. ``x`` is
    whatever the transforms take: a series batch ``(B, C, T)``, a list of texts, an image. Subclasses change how
    one view is drawn by overriding :meth:`draw`.

    Args:
        first: the augmentation of the first view, called ``first(x, generator=g)``.
        second: the augmentation of the second view (default: ``first``).

    Example::

        >>> from otalign.modalities.text import RandomDeletion
        >>> v0, v1 = TwoViews(RandomDeletion(0.2))(["a b c d e"], torch.Generator().manual_seed(0))
    """

    def __init__(self, first: Callable, second: Optional[Callable] = None):
        if not callable(first) or (second is not None and not callable(second)):
            raise TypeError("first, second: expected callables (transforms or augmentations)")
        super().__init__()
        self.first = first
        self.second = first if second is None else second

    def __call__(self, x: Any, generator: Optional[torch.Generator] = None) -> tuple[Any, Any]:
        return super().__call__(x, generator)

    def augment(self, x: Any, generator: Optional[torch.Generator]) -> tuple[Any, Any]:
        """The first view, then the second (see the class docstring)."""
        return self.draw(self.first, x, generator), self.draw(self.second, x, generator)

    def draw(self, transform: Callable, x: Any, generator: Optional[torch.Generator]) -> Any:
        """One view of ``x``: ``transform(x, generator=generator)``."""
        return transform(x, generator=generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(first={self.first!r}, second={self.second!r})"


__all__ = ["TwoViews"]
