"""Seeding helper shared by the modalities: run code that draws from the global RNG reproducibly."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch


@contextlib.contextmanager
def seeded(generator: Optional[torch.Generator], device: torch.device) -> Iterator[None]:
    """Run the block with the global RNG (CPU and ``device``) seeded from ``generator``; restore it afterwards.

    With ``generator=None`` the block uses the global RNG as it is. Used to make transforms that only know the
    global RNG (torchvision, dropout) reproducible from a ``torch.Generator``.
    """
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    if device.type == "cpu":
        fork = torch.random.fork_rng(devices=[])
    else:
        index = device.index if device.index is not None else torch.get_device_module(device.type).current_device()
        fork = torch.random.fork_rng(devices=[index], device_type=device.type)
    with fork:
        torch.manual_seed(seed)
        yield
