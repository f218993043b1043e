"""Just enough of ``torch.distributed`` for ``torchrun``: process-group setup, sharding, reductions.

Run several processes with ``torchrun --nproc_per_node=N -m otalign.cli train ...``. Each process takes an equal
shard of every epoch's permutation (the permutation is drawn from the same seed on every rank), batch norms become
``SyncBatchNorm`` (on CUDA) and the model is wrapped in ``DistributedDataParallel``; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``) and pick the device.

    ``device="auto"`` is ``cuda:<local_rank>`` when CUDA is available, else ``cpu``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank), resolved


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``"cuda"`` -> ``cuda:<local_rank>``;
    anything else as ``torch.device`` reads it. Raises ValueError naming ``device`` for a device that is not there
    (CUDA without a GPU, an index past the visible GPUs, MPS off a Mac)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device: cannot parse {device!r} ({error})") from error
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if resolved.index >= count:
            found = "no CUDA device is available" if count == 0 else f"only {count} CUDA device(s) are visible"
            raise ValueError(f"device: {device!r} asks for {resolved} but {found}; use 'cpu' or 'auto'")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {device!r} asks for Apple's MPS, which is not available; use 'cpu' or 'auto'")
    elif resolved.type not in ("cpu", "mps"):
        raise ValueError(f"device: {device!r} is not a device otalign trains on; use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return resolved


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` launch, or a plain process."""
    return int(os.environ.get("RANK", "0")) == 0


def teardown() -> None:
    """Destroy the process group if this module's :func:`setup` created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def prepare_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device``; when distributed, convert batch norms to ``SyncBatchNorm`` (CUDA) and wrap it in
    DDP.

    Returns the module to call for training; reach the plain model through :func:`unwrap`.
    """
    model = model.to(device)
    if not info.enabled:
        return model
    if device.type == "cuda":  # SyncBatchNorm runs on accelerators only; on CPU (gloo) each rank keeps its own
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shard(permutation: Tensor, info: DistInfo, batch_size: int) -> list[Tensor]:
    """This rank's batches of one epoch: ``permutation`` (the same on every rank) cut into global batches of
    ``batch_size`` (the last partial batch dropped), each split into ``world_size`` equal per-rank slices."""
    if batch_size % info.world_size:
        raise ValueError(f"batch_size: {batch_size} is not divisible by world_size {info.world_size}")
    per_rank = batch_size // info.world_size
    batches = []
    for start in range(0, permutation.numel() - batch_size + 1, batch_size):
        batch = permutation[start:start + batch_size]
        batches.append(batch[info.rank * per_rank:(info.rank + 1) * per_rank])
    return batches


def mean_over_ranks(value: float, info: DistInfo, device: torch.device) -> float:
    """Average a Python number over all processes (identity when not distributed)."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op when not distributed)."""
    if info.enabled:
        dist.barrier()
