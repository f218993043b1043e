"""The base of the batched, seeded series transforms (:class:`SeriesTransform`), their combinators
(:class:`RandomApply`, :class:`Compose`) and the helpers the transforms share (input checks, random draws).

Conventions: a series is a float tensor ``(C, T)`` (channels x time steps) and a batch is ``(B, C, T)``. A transform
keeps the shape and the dtype of its input, draws independent random parameters for each series of a batch in one
vectorised call, and is called as ``transform(x, generator=None)``: with a generator the output depends only on the
generator's state (random numbers are drawn on the generator's device and moved to ``x``'s device, so a CPU
generator also seeds CUDA inputs); without one, on torch's global RNG. Arithmetic runs in float32 at least
(half-precision inputs are promoted, then cast back).

Example::

    >>> from otalign.modalities.timeseries import Compose, Jitter, RandomApply, Scaling
    >>> t = Compose([RandomApply(Jitter(0.1), p=0.5), Scaling(0.1)])
    >>> t(torch.randn(16, 6, 100), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([16, 6, 100])
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .resampling import work_dtype


def _check_series(x: Tensor, name: str = "x") -> Tensor:
    """``x`` itself when it is a float ``(C, T)`` or ``(B, C, T)`` tensor; otherwise an error naming ``name``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a float tensor (C, T) or (B, C, T), got {type(x).__name__}")
    if x.dim() not in (2, 3) or not x.is_floating_point():
        raise ValueError(
            f"{name}: expected a float tensor (C, T) or (B, C, T), got {x.dtype} of shape {tuple(x.shape)}"
        )
    return x


def draw_device(generator: Optional[torch.Generator], like: Tensor) -> torch.device:
    """Where random numbers are drawn: the generator's device, or ``like``'s without a generator."""
    return generator.device if generator is not None else like.device


def draw_rand(shape: Sequence[int], generator: Optional[torch.Generator], like: Tensor) -> Tensor:
    """Uniform ``[0, 1)`` numbers drawn on the generator's device, returned on ``like``'s device and dtype."""
    u = torch.rand(tuple(shape), generator=generator, device=draw_device(generator, like), dtype=like.dtype)
    return u.to(like.device)


def draw_randn(shape: Sequence[int], generator: Optional[torch.Generator], like: Tensor) -> Tensor:
    """Standard normal numbers drawn on the generator's device, returned on ``like``'s device and dtype."""
    z = torch.randn(tuple(shape), generator=generator, device=draw_device(generator, like), dtype=like.dtype)
    return z.to(like.device)


def check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """``value`` as a float pair ``(a, b)`` with ``low <= a <= b <= high``; otherwise an error naming ``name``."""
    value = tuple(float(v) for v in value)
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name}: expected (low, high) with {low} <= low <= high <= {high}, got {value}")
    return value


def check_nonneg(name: str, value: float) -> float:
    """``value`` as a float when it is ``>= 0`` (not NaN); otherwise an error naming ``name``."""
    if not value >= 0:
        raise ValueError(f"{name}: must be >= 0, got {value}")
    return float(value)


class SeriesTransform(nn.Module):
    """Base class: ``forward(x, generator=None)`` takes ``(C, T)`` or ``(B, C, T)`` float tensors and calls
    :meth:`apply` on a ``(B, C, T)`` batch in the working dtype (float32 or wider); the result is cast back."""

    batched = True

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        x = _check_series(x)
        batch = x.unsqueeze(0) if x.dim() == 2 else x
        out = self.apply(batch.to(work_dtype(x.dtype)), generator).to(x.dtype)
        return out[0] if x.dim() == 2 else out

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        raise NotImplementedError


class RandomApply(SeriesTransform):
    """Apply ``transform`` to each series of a batch with probability ``p`` (an independent draw per series)."""

    def __init__(self, transform: SeriesTransform, p: float = 0.5):
        super().__init__()
        if not isinstance(transform, SeriesTransform):
            raise TypeError(f"transform: expected a SeriesTransform, got {type(transform).__name__}")
        if not 0 <= p <= 1:
            raise ValueError(f"p: expected a probability, got {p}")
        self.transform, self.p = transform, float(p)

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        chosen = draw_rand((x.shape[0], 1, 1), generator, x) < self.p
        return torch.where(chosen, self.transform.apply(x, generator), x)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class Compose(SeriesTransform):
    """Apply series transforms in sequence, passing the same generator along (itself batched and seeded).

    Example::

        >>> t = Compose([Scaling(0.1), TimeWarp(0.2), Jitter(0.03)])
        >>> t(torch.randn(16, 6, 100), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([16, 6, 100])
    """

    def __init__(self, transforms: Sequence[SeriesTransform]):
        super().__init__()
        for t in transforms:
            if not isinstance(t, SeriesTransform):
                raise TypeError(f"transforms: expected SeriesTransform instances, got {type(t).__name__}")
        self.transforms = nn.ModuleList(transforms)

    def apply(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        for t in self.transforms:
            x = t.apply(x, generator)
        return x


__all__ = ["Compose", "RandomApply", "SeriesTransform"]
