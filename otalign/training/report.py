"""The demo's ``report.md``: setup, one table per condition, timing, and figures."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from .demo import CONDITIONS, LABELS, METRICS

HEADERS = {
    "probe_few": "few-label probe (5/class) ↑",
    "probe_full": "full probe ↑",
    "knn": "kNN ↑",
    "wdm": "WDM",
    "uniformity": "uniformity ↓",
    "alignment": "alignment ↓",
}
CONDITION_TEXT = {
    "clean": "both views augmented (small random rotation, shift and zoom, light pixel noise), no corruption",
    "corrupted": "as clean, plus heavy Gaussian noise (severity 5) on the second view of a random half of the pairs",
}


def write_report(results: dict[str, Any], runs: dict[str, dict[str, list[dict[str, Any]]]], out: Path) -> Path:
    """Write ``out/report.md`` and its figures: ``accuracy.png`` (few-label probe) and ``knn.png`` per method and
    condition, and per condition ``plans_<condition>.png`` (seed 0's learned plans on one test batch next to the
    target) and ``loss_<condition>.png`` (loss curves, mean ± std over seeds)."""
    from .. import plots

    out = Path(out)
    methods = ["untrained", *results["methods"]]
    trained = results["methods"]
    figures = []
    for metric, name, ylabel in (("probe_few", "accuracy.png", "few-label probe accuracy"),
                                 ("knn", "knn.png", "kNN accuracy")):
        scores = {
            condition: {LABELS.get(m, m): table[m]["per_seed"][metric] for m in trained}
            for condition, table in results["results"].items()
        }
        reference = results["results"]["clean"]["untrained"]["mean"][metric] if "clean" in results["results"] else None
        plots.accuracy_bars(scores, out / name, ylabel=ylabel, title=f"{ylabel} (mean ± std over seeds)",
                            reference=reference)
        figures.append((ylabel, name))
    for condition, by_method in runs.items():
        first = {m: by_method[m][0] for m in trained if "plan" in by_method[m][0]}
        if first:
            name = f"plans_{condition}.png"
            target = next(iter(first.values()))["target"]
            shared = {LABELS.get(m, m): r["plan"] for m, r in first.items() if np.array_equal(r["target"], target)}
            plots.plan_grid(shared, target, out / name,
                            title=f"learned plans on one test batch of {target.shape[0] // 2} pairs, {condition} views")
            figures.append((f"learned plans vs target, {condition}", name))
        curves = {LABELS.get(m, m): [[r["loss"] for r in run["history"]] for run in by_method[m]] for m in trained}
        name = f"loss_{condition}.png"
        plots.loss_curves(curves, out / name, title=f"training loss, {condition} views")
        figures.append((f"training loss, {condition}", name))

    lines = [
        results.get("title") or "# otalign demo: contrastive learning as OT alignment on scikit-learn's digits",
        "",
        f"{results['seeds']} seed(s), {results['epochs']} epochs per run"
        + (" — QUICK SMOKE RUN (tiny subset; numbers are not meaningful)" if results["quick"] else "")
        + f"; wall time {results['seconds']:.0f} s with {results['workers']} worker process(es) of one torch "
        f"thread each on {platform.machine()} ({results['cpu_seconds']:.0f} s of CPU time in all runs).",
        "",
        results.get("setup") or (
            "Setup: 1,797 8x8 digit images, a fixed 75/25 train/test split. MLP encoder (128-d features, read by "
            "all evaluations), MLP projection head (64-d, what the loss sees), Adam, batch 256, warmup then cosine "
            "decay, temperature (eps) 0.5; GCA methods run 10 Sinkhorn iterations, GCA-UOT uses rho 0.2. BYOL uses "
            "an EMA target (tau from 0.95 up to 1)."),
        "",
        "Metrics, on frozen encoder features: **few-label probe** = logistic regression trained on 5 labels per "
        f"class, mean of {results['eval_draws']} label draws (the number that separates methods); full probe = all "
        "training labels "
        "(saturates on easy data such as digits, where even an untrained encoder scores high); kNN = weighted 20-NN (cosine); on two views "
        "of the test images made as in training: alignment (mean squared distance of normalised positive pairs, "
        "lower = more invariant), WDM (Wasserstein dependency between paired features, entropic estimate); "
        "uniformity on the clean test features (lower = more spread). Values are mean ± sample std over seeds "
        "(the split is fixed; seeds change initialisation, batches and augmentations).",
        "",
    ]
    for condition, table in results["results"].items():
        text = results.get("condition_text", {}).get(condition) or CONDITION_TEXT.get(
            condition, str(results.get("conditions", CONDITIONS).get(condition, "")))
        lines += [f"## {condition}: {text}", ""]
        lines.append("| method | " + " | ".join(HEADERS[m] for m in METRICS) + " |")
        lines.append("|---|" + "---:|" * len(METRICS))
        for method in methods:
            entry = table[method]
            if results["seeds"] > 1:
                cells = [f"{entry['mean'][m]:.3f} ± {entry['std'][m]:.3f}" for m in METRICS]
            else:
                cells = [f"{entry['mean'][m]:.3f}" for m in METRICS]
            lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
        lines += ["", reading(table, trained, results["seeds"]), ""]
    lines += ["## Figures", ""]
    for caption, name in figures:
        lines += [f"![{caption}]({name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def reading(table: dict[str, Any], methods: list[str], seeds: int) -> str:
    """One sentence on the few-label probe: the best method, its gain over the untrained encoder, and which
    methods it cannot be told apart from (gap below two standard errors of the difference of the seed means)."""
    means = {m: table[m]["mean"]["probe_few"] for m in methods}
    best = max(means, key=means.get)
    floor = table["untrained"]["mean"]["probe_few"]
    text = (f"Few-label probe: best {LABELS.get(best, best)} at {means[best]:.3f} "
            f"({means[best] - floor:+.3f} over the untrained encoder)")
    if seeds < 2:
        return text + "; one seed, so no spread to compare against."

    def standard_error(m: str) -> float:
        return (table[best]["std"]["probe_few"] ** 2 / seeds + table[m]["std"]["probe_few"] ** 2 / seeds) ** 0.5

    tied = [LABELS.get(m, m) for m in methods if m != best and means[best] - means[m] < 2 * standard_error(m)]
    if tied:
        return text + f"; not distinguishable from it (gap < 2 standard errors): {', '.join(tied)}."
    return text + "; every other method is more than 2 standard errors below it."
