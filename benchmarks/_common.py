"""Shared helpers of the benchmark scripts: timing, machine description, markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Sequence

import torch


def median_ms(fn: Callable[[], object], repeats: int = 3, warmup: int = 1, device: str = "cpu") -> float:
    """Median wall time of ``fn()`` in milliseconds; on a CUDA ``device`` the queue is drained before the clock
    starts and before it stops, so the time is that of the work, not of its launch."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def machine() -> str:
    """One line describing where a figure was measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {device}"
    )


def reset_peak_rss() -> None:
    """Reset this process's peak resident memory (Linux ``clear_refs``): a child started by a large parent otherwise
    inherits the parent's high-water mark."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start or :func:`reset_peak_rss`, in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(x: object) -> str:
    if isinstance(x, float):
        if x != x:
            return "nan"
        if abs(x) >= 100:
            return f"{x:.0f}"
        if abs(x) >= 1:
            return f"{x:.2f}"
        return f"{x:.2g}"
    return str(x)
