"""Whether a tensor is unchanged since it was last seen, for caches keyed on tensors (a plan's known scalings, a
workspace's logs of the masses).

PyTorch counts the in-place writes to a tensor's memory in a version counter that its views and detached aliases
share; a cache that stored the count can tell that the tensor was not written to since. Tensors made under
``torch.inference_mode()`` keep no counter: for them nothing can be verified, and a cache must recompute.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor


def write_count(x: Tensor) -> Optional[int]:
    """The version counter of ``x`` (in-place writes to its memory so far), or ``None`` for an inference tensor,
    which keeps none: callers treat ``None`` as "unknown", never as equal to anything."""
    return None if x.is_inference() else x._version


__all__ = ["write_count"]
