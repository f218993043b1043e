"""Why float32 ``torch.exp`` looked 3.6x slower than NumPy's on this CPU: one hypothesis per row, measured.

Each variant runs ``exp`` on a 4096 x 4096 float32 matrix (arguments in [-10, 0], or in [-180, -80] for the
subnormal rows) in its own process pinned to core 0 (``taskset -c 0``; one torch thread unless the row says two),
so that environment variables read at start-up (``ATEN_CPU_CAPABILITY``, ``THP_MEM_ALLOC_ENABLE``) take effect.
Variants run in interleaved rounds; the table gives each one's median over rounds (each round's figure is the
median of 11 calls after 2 warm-up calls).

Hypotheses: the vectorised kernel itself (ATen's AVX-512 / AVX2 ``Vectorized<float>::exp`` against NumPy's SIMD
loop, both writing into a held buffer), threads, the CPU capability, subnormal results and
``torch.set_flush_denormal``, and the allocation of a fresh 64 MiB output (NumPy asks the kernel for transparent
huge pages with ``madvise``; PyTorch only with ``THP_MEM_ALLOC_ENABLE=1``).

Not measured as rows: MKL's vector maths (with ``MKL_VERBOSE=1`` this build logs its GEMM calls but no VM
function for ``torch.exp``: ATen's own kernel runs) and oneDNN (``torch.backends.mkldnn``; not used by element-wise
ops on strided tensors).

Run: ``python benchmarks/exp.py [--rounds 3]``. Writes ``benchmarks/results/exp.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> (description, extra environment, torch threads)
VARIANTS = {
    "np": ("numpy.exp(x), fresh output (NumPy madvises huge pages)", {}, 1),
    "np_nohuge": ("numpy.exp(x), fresh output, NumPy's huge-page madvise off", {}, 1),
    "np_out": ("numpy.exp(x, out=held)", {}, 1),
    "torch": ("torch.exp(x), fresh output (default allocator)", {}, 1),
    "torch_thp": ("torch.exp(x), fresh output, THP_MEM_ALLOC_ENABLE=1", {"THP_MEM_ALLOC_ENABLE": "1"}, 1),
    "torch_out": ("torch.exp(x, out=held), AVX-512 (default)", {}, 1),
    "torch_out_avx2": ("torch.exp(x, out=held), ATEN_CPU_CAPABILITY=avx2", {"ATEN_CPU_CAPABILITY": "avx2"}, 1),
    "torch_out_2": ("torch.exp(x, out=held), 2 threads", {}, 2),
    "torch_alloc": ("torch.empty(n, n).fill_(0): the fresh allocation alone", {}, 1),
    "torch_alloc_thp": ("torch.empty(n, n).fill_(0), THP_MEM_ALLOC_ENABLE=1", {"THP_MEM_ALLOC_ENABLE": "1"}, 1),
    "np_sub": ("numpy.exp(x, out=held), subnormal / zero results", {}, 1),
    "torch_sub": ("torch.exp(x, out=held), subnormal / zero results", {}, 1),
    "torch_sub_ftz": ("torch.exp(x, out=held), subnormal results, set_flush_denormal(True)", {}, 1),
}

CHILD = r"""
import statistics, sys, time
import numpy as np, torch
variant, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
if variant == "np_nohuge":
    np._core.multiarray._set_madvise_hugepage(False)
if variant == "torch_sub_ftz":
    torch.set_flush_denormal(True)
n = 4096
low, width = (-180.0, 100.0) if variant.endswith(("sub", "sub_ftz")) else (-10.0, 10.0)
x = (low + width * np.random.default_rng(0).random((n, n), dtype=np.float32)).astype(np.float32)
t = torch.from_numpy(x.copy())
held_np, held_t = np.empty_like(x), torch.empty_like(t)
if variant.startswith("np"):
    fn = (lambda: np.exp(x)) if variant in ("np", "np_nohuge") else (lambda: np.exp(x, out=held_np))
elif variant.startswith("torch_alloc"):
    fn = lambda: torch.empty(n, n).fill_(0.0)
elif variant in ("torch", "torch_thp"):
    fn = lambda: torch.exp(t)
else:
    fn = lambda: torch.exp(t, out=held_t)
for _ in range(2):
    fn()
samples = []
for _ in range(11):
    start = time.perf_counter()
    fn()
    samples.append((time.perf_counter() - start) * 1e3)
print(statistics.median(samples))
"""


def run(variant: str) -> float:
    _, extra, threads = VARIANTS[variant]
    prefix = ["taskset", "-c", "0"] if shutil.which("taskset") and threads == 1 else []
    env = {**os.environ, **extra}
    out = subprocess.run(prefix + [sys.executable, "-c", CHILD, variant, str(threads)], env=env, check=True,
                         capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    load = os.getloadavg()[0]
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            samples[variant].append(run(variant))
            print(variant, f"{samples[variant][-1]:.2f} ms", flush=True)
    rows = [[VARIANTS[v][0], statistics.median(s)] for v, s in samples.items()]
    text = (
        "# float32 exp on this CPU: torch against NumPy\n\n"
        f"Machine: {machine()}; CPU capability {torch.backends.cpu.get_cpu_capability()}; load average at start "
        f"{load:.1f} on {os.cpu_count()} CPUs; {args.rounds} interleaved rounds. Written by `benchmarks/exp.py`.\n\n"
        "4096 x 4096 float32, arguments in [-10, 0] unless the row says subnormal (arguments in [-180, -80]).\n\n"
        + markdown_table(["variant", "median (ms)"], rows)
        + "\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "exp.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
