"""OT toolbox benchmark: sliced Wasserstein, fixed-support barycenters, 1-D, exact and Gaussian OT against POT, on
the same inputs in the same run.

Everything runs single-threaded (``torch.set_num_threads(1)`` and one BLAS thread, set before NumPy loads), the
same for both libraries; the machine is shared, so the ratios within one run are what counts. Times are medians of
``--repeats`` runs (after one warm-up for the small problems). Each row also gives the largest difference between
the two results.

* Sliced: ``n = m = 100,000`` points in ``d = 16`` (and ``m = 80,000``; and random weights), 200 given unit
  projections, ``p = 2``: ``otalign.sliced_wasserstein`` vs ``ot.sliced_wasserstein_distance`` (POT's torch backend
  on the same tensors).
* Barycenter: 8 random histograms on a 64 x 64 grid of ``[0, 1]^2`` (n = 4096), squared Euclidean cost (max 2),
  ``eps = 0.01``, exactly ``--iterations`` iterations on both sides (POT ``stopThr=0``): ``otalign.barycenter`` vs
  ``ot.bregman.barycenter`` (its default ``method="sinkhorn"``, NumPy and torch backends).
* 1-D: ``otalign.wasserstein_1d`` vs ``ot.wasserstein_1d`` on ``(100,000, 64)`` weighted samples.
* Exact: ``otalign.solve(..., "exact")`` vs ``ot.emd`` (the same network simplex: the row shows the wrapper's cost).
* Gaussian: ``empirical_bures_wasserstein_distance`` on ``(20,000, 128)`` samples vs POT's.

Run: ``OMP_NUM_THREADS=1 python benchmarks/toolbox.py`` (about 20 minutes on a shared 2-core machine); ``--quick`` for a smoke run.
Writes ``benchmarks/results/toolbox.md`` (``--output`` for another path).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import otalign  # noqa: E402
from otalign import gaussian  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from _common import machine, markdown_table, median_ms  # noqa: E402

F64 = torch.float64


def sliced_rows(ot, n: int, repeats: int) -> list[list[object]]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for dtype, m, weighted in ((torch.float32, n, False), (F64, n, False), (F64, 4 * n // 5, False), (F64, n, True)):
        x = torch.randn(n, 16, generator=gen, dtype=dtype)
        y = torch.randn(m, 16, generator=gen, dtype=dtype) * 1.3 + 0.5
        theta = otalign.sliced.random_projections(16, 200, seed=1, dtype=dtype)
        a = b = None
        if weighted:
            a = torch.rand(n, generator=gen, dtype=dtype) + 0.1
            b = torch.rand(m, generator=gen, dtype=dtype) + 0.1
            a, b = a / a.sum(), b / b.sum()
        mine = median_ms(lambda: otalign.sliced_wasserstein(x, y, a, b, projections=theta), repeats, warmup=0)
        theirs = median_ms(lambda: ot.sliced_wasserstein_distance(x, y, a, b, projections=theta), repeats, warmup=0)
        gap = float((otalign.sliced_wasserstein(x, y, a, b, projections=theta)
                     - ot.sliced_wasserstein_distance(x, y, a, b, projections=theta)).abs())
        label = f"sliced, n={n:,}, m={m:,}, d=16, L=200, {'weighted' if weighted else 'uniform'}, {str(dtype)[6:]}"
        rows.append([label, mine, theirs, theirs / mine, f"{gap:.1e}"])
    return rows


def barycenter_rows(ot, side: int, iterations: int, repeats: int) -> list[list[object]]:
    grid = torch.linspace(0, 1, side, dtype=F64)
    points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    cost = otalign.free_support.squared_distances(points, points)
    gen = torch.Generator().manual_seed(0)
    hist = torch.rand(8, side * side, generator=gen, dtype=F64)
    hist = hist / hist.sum(1, keepdim=True)
    eps = 0.01
    a_np, c_np = hist.T.contiguous().numpy(), cost.numpy()
    a_t = hist.T.contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = median_ms(lambda: otalign.barycenter(hist, cost, eps=eps, tol=0, max_iter=iterations), repeats)
        pot_np = median_ms(lambda: ot.bregman.barycenter(a_np, c_np, eps, stopThr=0, numItermax=iterations), repeats)
        pot_t = median_ms(lambda: ot.bregman.barycenter(a_t, cost, eps, stopThr=0, numItermax=iterations), repeats)
        q = otalign.barycenter(hist, cost, eps=eps, tol=0, max_iter=iterations)
        gap_np = float((q - torch.from_numpy(ot.bregman.barycenter(a_np, c_np, eps, stopThr=0,
                                                                   numItermax=iterations))).abs().max())
        converged = otalign.barycenter(hist, cost, eps=eps, tol=1e-9, max_iter=20_000)
        reference = ot.bregman.barycenter(a_np, c_np, eps, stopThr=1e-12, numItermax=20_000)
        gap_conv = float((converged - torch.from_numpy(reference)).abs().max())
    label = f"barycenter, 8 x {side}x{side} grid, eps={eps}, {iterations} it."
    return [
        [f"{label} (vs POT NumPy)", mine, pot_np, pot_np / mine, f"{gap_np:.1e} (converged: {gap_conv:.1e})"],
        [f"{label} (vs POT torch)", mine, pot_t, pot_t / mine, ""],
    ]


def small_rows(ot, repeats: int, quick: bool) -> list[list[object]]:
    gen = torch.Generator().manual_seed(2)
    rows = []
    n = 10_000 if quick else 100_000
    u = torch.randn(n, 64, generator=gen, dtype=F64)
    v = torch.randn(n // 2, 64, generator=gen, dtype=F64) + 1
    uw = torch.rand(n, generator=gen, dtype=F64) + 0.1
    vw = torch.rand(n // 2, generator=gen, dtype=F64) + 0.1
    uw, vw = uw / uw.sum(), vw / vw.sum()
    mine = median_ms(lambda: otalign.wasserstein_1d(u, v, uw, vw, p=2), repeats)
    theirs = median_ms(lambda: ot.wasserstein_1d(u, v, uw, vw, p=2), repeats)
    gap = float((otalign.wasserstein_1d(u, v, uw, vw, p=2) - ot.wasserstein_1d(u, v, uw, vw, p=2)).abs().max())
    rows.append([f"wasserstein_1d, ({n:,}, 64) vs ({n // 2:,}, 64), weighted", mine, theirs, theirs / mine,
                 f"{gap:.1e}"])
    k = 300 if quick else 1000
    x, y = torch.randn(k, 5, generator=gen, dtype=F64), torch.randn(k, 5, generator=gen, dtype=F64)
    C = otalign.free_support.squared_distances(x, y)
    a = torch.full((k,), 1 / k, dtype=F64)
    mine = median_ms(lambda: otalign.solve(otalign.Problem(C, a, a), "exact").matrix, repeats)
    theirs = median_ms(lambda: ot.emd(a.numpy(), a.numpy(), C.numpy()), repeats)
    gap = float((otalign.solve(otalign.Problem(C, a, a), "exact").value - ot.emd2(a, a, C)).abs())
    rows.append([f"exact, n=m={k}", mine, theirs, theirs / mine, f"{gap:.1e}"])
    s = 2_000 if quick else 20_000
    xs = torch.randn(s, 128, generator=gen, dtype=F64)
    xt = torch.randn(s, 128, generator=gen, dtype=F64) * 0.5 + 1
    mine = median_ms(lambda: gaussian.empirical_bures_wasserstein_distance(xs, xt), repeats)
    theirs = median_ms(lambda: ot.gaussian.empirical_bures_wasserstein_distance(xs, xt), repeats)
    gap = float((gaussian.empirical_bures_wasserstein_distance(xs, xt)
                 - ot.gaussian.empirical_bures_wasserstein_distance(xs, xt).reshape(())).abs())
    rows.append([f"Gaussian (empirical), ({s:,}, 128) each", mine, theirs, theirs / mine, f"{gap:.1e}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--iterations", type=int, default=100, help="barycenter iterations")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "toolbox.md")
    args = parser.parse_args()
    import ot

    torch.set_num_threads(1)
    n = 5_000 if args.quick else 100_000
    side = 16 if args.quick else 64
    iterations = 10 if args.quick else args.iterations
    rows = sliced_rows(ot, n, args.repeats)
    rows += barycenter_rows(ot, side, iterations, args.repeats)
    rows += small_rows(ot, args.repeats, args.quick)
    header = ["problem", "otalign (ms)", "POT (ms)", "speed-up", "largest difference"]
    text = "\n".join([
        "# OT toolbox: otalign vs POT",
        "",
        f"Machine: {machine()}. POT {ot.__version__}. One thread each; medians of {args.repeats} runs.",
        "Written by `benchmarks/toolbox.py`" + (" (--quick)" if args.quick else "") + ".",
        "",
        markdown_table(header, rows),
        "",
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
