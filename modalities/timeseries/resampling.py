"""Series on new time grids: resampling to another length (a change of sampling rate), reading a series at
fractional times, and smooth curves through evenly placed knots.

Conventions: time is the last dimension of a float tensor. :func:`resample_length` is band-limited resampling in
the cosine basis (torch only; the series need not be periodic). Arithmetic runs in float32 at least
(half-precision inputs are promoted, then cast back).

Example::

    >>> resample_length(torch.randn(8, 6, 100), 50).shape
    torch.Size([8, 6, 50])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic runs in: ``dtype`` promoted to float32 at least."""
    return torch.promote_types(dtype, torch.float32)


def resample_length(x: Tensor, length: int) -> Tensor:
    """Resample series ``(..., T)`` to ``length`` samples (a change of sampling rate by ``length / T``).

    Samples are taken as the centres of ``T`` equal cells of the recording, so output
    sample ``j`` sits at input time ``(j + 1/2) T / length - 1/2`` and both series span the same time. The series is
    expanded in the cosine basis ``cos(pi k (t + 1/2) / T)`` (the DCT-II, i.e. the Fourier series of its mirror
    extension, so it need not be periodic), the terms ``k < min(T, length)`` are kept (an ideal low-pass when
    ``length < T``), and the expansion is evaluated on the new grid. Series in the span of the kept terms are
    reproduced exactly, and a round trip through a lower rate keeps exactly the content below that rate's Nyquist
    frequency.

    Args:
        x: float tensor whose last dimension is time.
        length: the new number of samples, >= 1.

    Returns:
        Tensor ``(..., length)`` of ``x``'s dtype.

    Example::

        >>> resample_length(torch.randn(8, 6, 100), 50).shape
        torch.Size([8, 6, 50])
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise ValueError(f"x: expected a float tensor (..., T), got {getattr(x, 'dtype', type(x).__name__)}")
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length: expected an int >= 1, got {length!r}")
    t = x.shape[-1]
    if length == t:
        return x.clone()
    work = x.to(work_dtype(x.dtype))
    keep = min(t, length)
    # The rfft of the mirror extension (length 2T) is 2 exp(i pi k / 2T) C_k, C_k the DCT-II coefficients.
    k = torch.arange(keep, device=x.device, dtype=work.dtype)
    spectrum = torch.fft.rfft(torch.cat([work, work.flip(-1)], dim=-1), dim=-1)[..., :keep]
    coefficients = (spectrum * torch.polar(torch.ones_like(k), -math.pi * k / (2 * t))).real  # 2 C_k
    out = coefficients.new_zeros(*coefficients.shape[:-1], length + 1, dtype=spectrum.dtype)
    out[..., :keep] = (length / t) * coefficients * torch.polar(torch.ones_like(k), math.pi * k / (2 * length))
    return torch.fft.irfft(out, n=2 * length, dim=-1)[..., :length].to(x.dtype)


def smooth_curves(knots: Tensor, length: int) -> Tensor:
    """Smooth curves ``(..., length)`` through knot values ``(..., K)`` placed evenly over the series, by cubic
    convolution interpolation (C1-smooth, passes through the knots)."""
    lead = knots.shape[:-1]
    flat = knots.reshape(-1, 1, 1, knots.shape[-1])
    curves = F.interpolate(flat, size=(1, length), mode="bicubic", align_corners=True)
    return curves.reshape(*lead, length)


def sample_linear(x: Tensor, positions: Tensor) -> Tensor:
    """``x (B, C, T)`` read at fractional time ``positions (B, T')`` in ``[0, T - 1]`` by linear interpolation."""
    t = x.shape[-1]
    positions = positions.clamp(0, t - 1)
    left = positions.floor().long().clamp(max=max(t - 2, 0))
    weight = (positions - left).unsqueeze(1)
    right = (left + 1).clamp(max=t - 1)
    index = left.unsqueeze(1).expand(-1, x.shape[1], -1)
    x_left = x.gather(-1, index)
    x_right = x.gather(-1, right.unsqueeze(1).expand(-1, x.shape[1], -1))
    return x_left + weight * (x_right - x_left)


__all__ = ["resample_length", "sample_linear", "smooth_curves", "work_dtype"]
