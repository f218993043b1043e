"""Figures for training runs and the demo report (matplotlib with the non-interactive Agg backend).

Each function writes one PNG and returns its path; none of them opens a window, so they work on headless machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, Path]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not figure.get_constrained_layout():
        figure.tight_layout()
    figure.savefig(path, dpi=120)
    _pyplot().close(figure)
    return path


def loss_curves(
    curves: Mapping[str, Sequence[Sequence[float]]], path: PathLike, title: str = "training loss"
) -> Path:
    """Loss per epoch, one line per name; several runs of a name (seeds) are drawn as their mean with a band of
    +- one standard deviation.

    Args:
        curves: name -> list of per-epoch loss sequences (one per run; runs of one name share their length).
        path: output PNG.

    Losses of different methods live on different scales; each name gets its own panel.

    Example::

        >>> loss_curves({"infonce": [[5.1, 4.7, 4.5]]}, "loss.png")
    """
    if not curves:
        raise ValueError("curves: expected at least one named curve")
    plt = _pyplot()
    names = list(curves)
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        runs = np.asarray([list(run) for run in curves[name]], dtype=float)
        if runs.ndim != 2 or runs.shape[1] == 0:
            raise ValueError(f"curves[{name!r}]: expected runs of equal, non-zero length")
        epochs = np.arange(1, runs.shape[1] + 1)
        mean, std = runs.mean(0), runs.std(0)
        ax.plot(epochs, mean, lw=1.5)
        if runs.shape[0] > 1:
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figure.suptitle(title)
    return _save(figure, path)


def plan_and_target(plan: np.ndarray, target: np.ndarray, path: PathLike, title: str = "") -> Path:
    """The learned plan of one batch next to its target plan (see :func:`plan_grid`).

    Args:
        plan, target: ``(n, m)`` non-negative arrays.
    """
    plan, target = np.asarray(plan, dtype=float), np.asarray(target, dtype=float)
    if plan.ndim != 2 or plan.shape != target.shape:
        raise ValueError(f"plan, target: expected two 2-D arrays of one shape, got {plan.shape} and {target.shape}")
    return plan_grid({"learned plan": plan}, target, path, title=title)


def plan_grid(plans: Mapping[str, np.ndarray], target: np.ndarray, path: PathLike, title: str = "") -> Path:
    """The target plan, then one learned plan per name, as images (rows = anchors, columns = candidates,
    view-blocked: the first half of the rows are view 0). Every matrix is row-normalised for display, and all
    panels share one logarithmic colour scale (one colour bar, :func:`shared_color_limits` of the learned plans,
    so that plans which differ look different; target entries above the scale take its top colour): a learned
    plan is read against its target on the same scale, and a near-uniform plan still shows its structure.

    Args:
        plans: name -> ``(n, m)`` non-negative array (same shape as ``target``).
        target: ``(n, m)`` non-negative array.

    Example::

        >>> plan_grid({"InfoNCE": p1, "GCAUOT": p2}, target, "plans.png")
    """
    return _save(plan_figure(plans, target, title), path)


def plan_figure(plans: Mapping[str, np.ndarray], target: np.ndarray, title: str = ""):
    """The matplotlib figure of :func:`plan_grid` (not saved); its image panels share ``vmin``/``vmax``."""
    target = np.asarray(target, dtype=float)
    panels = [("target plan", target)]
    for name, plan in plans.items():
        plan = np.asarray(plan, dtype=float)
        if plan.ndim != 2 or plan.shape != target.shape:
            raise ValueError(f"plans[{name!r}]: expected shape {target.shape} (the target's), got {plan.shape}")
        panels.append((name, plan))
    shown = [(name, row_normalised(matrix)) for name, matrix in panels]
    # the scale comes from the learned plans (a one-hot target's 1.0 would squeeze them into one colour); target
    # entries above it are drawn in the top colour
    vmin, vmax = shared_color_limits([matrix for _, matrix in (shown[1:] or shown)])
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    viridis = plt.get_cmap("viridis")
    cmap = viridis.with_extremes(bad=viridis(0.0))  # zero mass (masked by the log scale): the bottom colour
    columns = min(4, len(shown))
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns + 0.8, 3.4 * rows), squeeze=False,
                                layout="constrained")
    image = None
    for ax, (name, matrix) in zip(axes.flat, shown):
        image = ax.imshow(np.ma.masked_less_equal(matrix, 0.0), cmap=cmap, interpolation="nearest",
                          norm=LogNorm(vmin=vmin, vmax=vmax, clip=True))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("candidate")
        ax.set_ylabel("anchor")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    figure.colorbar(image, ax=list(axes.flat), fraction=0.046, pad=0.04, label="row-normalised mass (log scale)")
    if title:
        figure.suptitle(title)
    return figure


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows without mass stay 0)."""
    sums = matrix.sum(1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def shared_color_limits(matrices: Sequence[np.ndarray], decades: float = 4.0) -> tuple[float, float]:
    """``(vmin, vmax)`` of one logarithmic colour scale for a target and its learned plans: ``vmax`` the largest
    entry of all matrices, ``vmin`` their smallest positive entry but at most ``decades`` decades below ``vmax``
    (zeros are drawn at the bottom of the scale)."""
    positive = [m[m > 0] for m in map(np.asarray, matrices) if np.any(m > 0)]
    if not positive:
        return 10.0 ** -decades, 1.0
    vmax = max(float(p.max()) for p in positive)
    vmin = min(float(p.min()) for p in positive)
    vmin = min(max(vmin, vmax * 10.0 ** -decades), vmax / 10.0)
    return vmin, vmax


def accuracy_bars(
    scores: Mapping[str, Mapping[str, Sequence[float]]],
    path: PathLike,
    ylabel: str = "accuracy",
    title: str = "",
    reference: Optional[float] = None,
) -> Path:
    """Grouped bar chart: for each method, one bar per condition at the mean over runs, with +- one standard
    deviation error bars.

    Args:
        scores: condition -> method -> per-seed values.
        reference: optional horizontal line (e.g. the untrained encoder's score).

    Example::

        >>> accuracy_bars({"clean": {"infonce": [0.89, 0.90]}, "noisy": {"infonce": [0.87, 0.88]}}, "acc.png")
    """
    if not scores:
        raise ValueError("scores: expected at least one condition")
    conditions = list(scores)
    methods: list[str] = []
    for condition in conditions:
        methods += [m for m in scores[condition] if m not in methods]
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(methods) * max(1, len(conditions)) / 1.5), 3.8))
    width = 0.8 / len(conditions)
    x = np.arange(len(methods))
    low = 1.0
    for k, condition in enumerate(conditions):
        values = [np.asarray(scores[condition].get(m, []), dtype=float) for m in methods]
        means = np.array([v.mean() if v.size else np.nan for v in values])
        stds = np.array([v.std() if v.size else 0.0 for v in values])
        ax.bar(x + (k - (len(conditions) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=condition)
        if np.isfinite(means).any():
            low = min(low, float(np.nanmin(means - stds)))
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1, label="untrained encoder")
        low = min(low, reference)
    ax.set_xticks(x)
    ax.set_xticklabels(methods, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(figure, path)
