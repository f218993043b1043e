"""Entropic GW benchmark: otalign vs POT's ``ot.gromov.entropic_gromov_wasserstein`` on the same inputs, same run.

Problem: ``x (n, 3)`` and ``y (n, 2)`` Gaussian points, intra costs the squared distances scaled to max 1, uniform
masses, square loss, float64, eps = 5e-3 (POT's ``epsilon``), ``--outer`` outer steps from ``a b^T`` (tol = 0).
POT gets the dense ``n x n`` matrices (NumPy backend, its default ``solver="PGD"``, no warm start). otalign runs

* ``dense``: the same dense matrices (the linearisation is the same two ``n^3`` products as POT's);
* ``points``: ``PointCloud(x, x)`` / ``PointCloud(y, y)``: factorised squared distances, ``O(n^2 d)`` per
  linearisation; the linearised cost is materialised (``n m <= 2^24``) so each linear solve runs the
  kernel-domain Sinkhorn loop;
* ``points, lazy``: the same with ``materialize=False``: the linearised cost is not stored (soft-min over a
  low-rank cost; ``fixed`` protocol only). The linear solves still hold their absorbed kernel (``n m`` numbers)
  while ``n m <= 2^24``; beyond that, or with ``Sinkhorn(kernel="blocked")``, nothing of size ``n^2`` is stored.

Two protocols: ``fixed`` runs exactly ``--inner`` Sinkhorn iterations per outer step on both sides (POT
``stopThr=0``, otalign ``inner_tol=0``); ``tolerance`` runs each linear solve to POT's default ``stopThr=1e-9``
(its L2 column-marginal error, tested every 10 iterations, from scratch) and otalign's ``inner_tol=1e-9`` (the L1
row-marginal error, a stricter test, warm-started from the previous potentials). Reported: wall time (one run:
the machine is shared, so ratios within a run are what counts), speed-up over POT, and the largest entry-wise
difference between the two plans. Everything runs single-threaded (``torch.set_num_threads(1)`` and 1 BLAS
thread), the same for both.

The second table is ``examples/gromov_matching.py``: matching accuracy of GW plans between two feature maps of
the same digits.

Run: ``OMP_NUM_THREADS=1 python benchmarks/gromov.py`` (about 15 minutes); ``--quick`` for a smoke run.
Writes ``benchmarks/results/gromov.md`` (``--output`` for another name; the n = 4000 figures were run separately,
``--sizes 4000 --outer 2 --no-matching --output gromov_4000.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import otalign
from otalign import PointCloud

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "examples"))
from _common import machine, markdown_table  # noqa: E402

RESULTS = ROOT / "results"
EPS = 5e-3


def clouds(n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    x = x / (torch.cdist(x, x) ** 2).max().sqrt()
    y = y / (torch.cdist(y, y) ** 2).max().sqrt()
    return x, y


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def pot_plan(Cx: np.ndarray, Cy: np.ndarray, outer: int, inner) -> np.ndarray:
    import ot

    kwargs = {} if inner is None else {"numItermax": inner, "stopThr": 0.0}
    return ot.gromov.entropic_gromov_wasserstein(Cx, Cy, epsilon=EPS, max_iter=outer, tol=0.0, **kwargs)


def otalign_plan(geom_x, geom_y, outer: int, inner, materialize=None):
    problem = otalign.GWProblem(geom_x, geom_y, eps=EPS)
    options = {"inner_max_iter": inner, "inner_tol": 0.0} if inner is not None else {"inner_tol": 1e-9}
    plan = otalign.solve(problem, max_iter=outer, tol=0.0, grad="detach", materialize=materialize, **options)
    return plan.matrix.numpy(), plan.inner_iterations


def speed_rows(sizes, outer: int, inner: int) -> list[dict]:
    rows = []
    for n in sizes:
        x, y = clouds(n)
        Cx, Cy = torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2
        for protocol, iters in (("fixed", inner), ("tolerance", None)):
            t_pot, reference = timed(lambda: pot_plan(Cx.numpy(), Cy.numpy(), outer, iters))
            variants = [
                ("dense", lambda: otalign_plan(Cx, Cy, outer, iters)),
                ("points", lambda: otalign_plan(PointCloud(x, x), PointCloud(y, y), outer, iters)),
            ]
            if protocol == "fixed":  # to a tolerance, the log-domain loop over a lazy cost takes minutes
                variants.append(
                    ("points, lazy", lambda: otalign_plan(PointCloud(x, x), PointCloud(y, y), outer, iters, False)))
            for name, fn in variants:
                seconds, (matrix, inner_total) = timed(fn)
                rows.append({
                    "n": n, "protocol": protocol, "otalign input": name, "POT s": round(t_pot, 2),
                    "otalign s": round(seconds, 2), "speed-up": round(t_pot / seconds, 2),
                    "otalign inner its": inner_total, "max abs(P - P_POT)": float(np.abs(matrix - reference).max()),
                })
                print(rows[-1], flush=True)
    return rows


def matching_rows(quick: bool) -> list[dict]:
    import gromov_matching

    n = 60 if quick else 200
    rows = gromov_matching.run(n=n, dim=8, noise=0.05, eps=0.3, iterations=100)
    for row in rows:
        row["w"] = "n/a (dimensions differ)" if row["w"] is None else round(row["w"], 3)
        row["gw"], row["random"] = round(row["gw"], 3), round(row["random"], 4)
        print(row, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    return markdown_table(list(rows[0]), [list(row.values()) for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--inner", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-matching", action="store_true", help="skip the matching table")
    parser.add_argument("--output", default="gromov.md", help="file name under benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    sizes = [200, 400] if args.quick else args.sizes
    matching = [] if args.no_matching else matching_rows(args.quick)
    speed = speed_rows(sizes, args.outer, args.inner)
    text = [
        "# Entropic Gromov-Wasserstein: otalign vs POT",
        "",
        f"`python benchmarks/gromov.py {' '.join(sys.argv[1:])}`; {machine()}; single-threaded (both).",
        "",
        f"Square loss, float64, eps = {EPS:g}, {args.outer} outer steps, uniform masses; `fixed`: {args.inner} "
        "Sinkhorn iterations per outer step on both sides; `tolerance`: each linear solve to POT's default "
        "stopThr = 1e-9 (POT) / inner_tol = 1e-9 (otalign, warm-started). One run each: the machine is shared "
        "with other jobs, so compare within a row.",
        "",
        table(speed),
        "",
    ]
    if matching:
        text += [
            "## Matching two feature maps of the same digits (`examples/gromov_matching.py`)",
            "",
            "Fraction of rows of the plan whose argmax is the true partner (GW, eps = 0.3: PCA features vs a rotated + "
            "noised copy, or vs tanh of a random projection of the pixels; W: entropic OT on the raw features, only "
            "where the dimensions agree; random: 1/N).",
            "",
            table(matching),
            "",
        ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.output).write_text("\n".join(text))
    print(f"wrote {RESULTS / args.output}")


if __name__ == "__main__":
    main()
