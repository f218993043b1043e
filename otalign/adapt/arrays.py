"""Inputs of the domain-adaptation estimators: torch tensors, NumPy arrays, lists or pandas objects in (the
conversion rule of :mod:`otalign.arrays`), the caller's type out.

Samples are ``(n, d)`` numeric arrays (integer arrays are read as float64, like NumPy's promotion; a pandas
DataFrame by its ``to_numpy()``); labels are ``(n,)`` integer, boolean, float or string labels
(:func:`otalign.arrays.as_labels`), an integer ``-1`` marking an unlabelled sample (POT's convention). Computation
happens in torch on the device of the first tensor argument (the CPU otherwise); results go back as torch tensors
(on the argument's device) for tensor arguments and as NumPy arrays for every other container, in the argument's
floating dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .. import arrays

ArrayLike = Union[np.ndarray, Tensor, list, "pandas.Series", "pandas.DataFrame"]

#: Label value of an unlabelled sample.
MISSING_LABEL = -1


@dataclass(frozen=True)
class Container:
    """Where an input came from: NumPy or torch, its device and its dtype (to hand results back alike)."""

    numpy: bool
    device: torch.device
    dtype: torch.dtype

    def restore(self, x: Tensor) -> ArrayLike:
        """``x`` in this container (floating results take the input's floating dtype, if it had one)."""
        if self.dtype.is_floating_point and x.is_floating_point():
            x = x.to(self.dtype)
        if self.numpy:
            return x.detach().cpu().numpy()
        return x.detach().to(self.device)


def _as_tensor(name: str, x) -> tuple[Tensor, Container]:
    t = arrays.as_tensor(name, x)
    if isinstance(x, Tensor):
        return t.detach(), Container(False, t.device, t.dtype)
    return t, Container(True, t.device, t.dtype)


def as_samples(name: str, x, like: Optional[Tensor] = None) -> tuple[Tensor, Container]:
    """``x`` as a finite floating ``(n, d)`` tensor (on ``like``'s device and in a dtype that holds both) and the
    container to restore results into."""
    t, container = _as_tensor(name, x)
    if t.dim() != 2:
        raise ValueError(f"{name}: expected samples of shape (n_samples, n_features), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name}: is empty (shape {tuple(t.shape)})")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name}: expected real-valued samples, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if like is not None:
        t = t.to(device=like.device, dtype=torch.promote_types(t.dtype, like.dtype))
    if bool(torch.isnan(t).any()):
        raise ValueError(f"{name}: contains NaN")
    if bool(torch.isinf(t).any()):
        raise ValueError(f"{name}: contains inf")
    return t, container


def as_labels(name: str, y, size: int, device: torch.device, classes=None) -> tuple[Tensor, Container]:
    """``y`` as an int64 ``(size,)`` tensor of label codes on ``device`` (:func:`otalign.arrays.as_labels`; string
    labels coded against ``classes``, the sorted labels shared with the other side, by default ``y``'s own)."""
    t = arrays.as_labels(name, y, classes)
    container = Container(not isinstance(y, Tensor), t.device, t.dtype)
    if t.dim() != 1 or t.shape[0] != size:
        raise ValueError(f"{name}: expected one label per sample, shape ({size},), got shape {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.int64), container


def one_hot(labels: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(classes (L,), masks (n, L))``: the sorted distinct labels and each sample's indicator row."""
    classes, index = torch.unique(labels, sorted=True, return_inverse=True)
    return classes, torch.nn.functional.one_hot(index, classes.numel()).to(dtype)


__all__ = ["ArrayLike", "Container", "MISSING_LABEL", "as_labels", "as_samples", "one_hot"]
