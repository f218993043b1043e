"""The demo's ``report.md``: setup, how to read each metric, one table per condition, the conclusions the numbers
support (generated from them: differences are called real only beyond two standard errors), timing, figures."""

from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .demo_names import CONDITIONS, LABELS, METRICS

HEADERS = {
    "probe_few": "few-label probe (5/class) ↑",
    "probe_full": "full probe ↑",
    "knn": "kNN ↑",
    "wdm": "WDM ↑",
    "uniformity": "uniformity ↓",
    "alignment": "alignment ↓",
}
#: What each column measures and which direction is better (arrows: higher ↑ or lower ↓ is better).
METRIC_TEXT = {
    "probe_few": "logistic regression on frozen features trained on 5 labels per class (mean over label draws); "
                 "the number that separates methods",
    "probe_full": "the same with all training labels; saturates on easy data",
    "knn": "weighted 20-nearest-neighbour vote under cosine similarity",
    "wdm": "Wasserstein dependency measure between the features of two views of the same test sample (entropic "
           "estimate); higher = the two views' features share more",
    "uniformity": "log of the mean Gaussian potential between normalised test features; lower = more spread out on "
                  "the sphere",
    "alignment": "mean squared distance between the normalised features of two views of the same test sample; "
                 "lower = more invariant to the augmentations. A collapsed encoder has perfect alignment, so read "
                 "it together with uniformity",
}
BASELINE_TEXT = (
    "The **untrained encoder** row is the same network at initialisation, evaluated in the same way: the floor that "
    "training has to beat. It is not weak on every column. Random features of small inputs (such as 8x8 images) "
    "keep most of the inputs' nearest neighbours, so its kNN accuracy can match or beat the trained encoders'. Its "
    "features barely move when the input is augmented, so its alignment is trivially small, and its uniformity "
    "poor (the features sit close together). The few-label probe is where training has to show."
)
CONDITION_TEXT = {
    "clean": "both views augmented (small random rotation, shift and zoom, light pixel noise), no corruption",
    "corrupted": "as clean, plus heavy Gaussian noise (severity 5) on the second view of a random half of the pairs",
}


def write_report(results: dict[str, Any], runs: dict[str, dict[str, list[dict[str, Any]]]], out: Path,
                 log: Optional[Callable[[str], None]] = None) -> Path:
    """Write ``out/report.md`` and its figures: ``accuracy.png`` (few-label probe) and ``knn.png`` per method and
    condition, and per condition ``plans_<condition>.png`` (seed 0's learned plans on one test batch next to the
    target) and ``loss_<condition>.png`` (loss curves, mean ± std over seeds). ``log`` gets a line per figure."""
    log = log or (lambda line: None)
    log("  loading matplotlib")
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
        log(f"  {name}")
    for condition, by_method in runs.items():
        first = {m: by_method[m][0] for m in trained if "plan" in by_method[m][0]}
        if first:
            name = f"plans_{condition}.png"
            target = next(iter(first.values()))["target"]
            shared = {LABELS.get(m, m): r["plan"] for m, r in first.items() if np.array_equal(r["target"], target)}
            plots.plan_grid(shared, target, out / name,
                            title=f"learned plans on one test batch of {target.shape[0] // 2} pairs, {condition} views")
            figures.append((f"learned plans vs target, {condition}", name))
            log(f"  {name}")
        curves = {LABELS.get(m, m): [[r["loss"] for r in run["history"]] for run in by_method[m]] for m in trained}
        name = f"loss_{condition}.png"
        plots.loss_curves(curves, out / name, title=f"training loss, {condition} views")
        figures.append((f"training loss, {condition}", name))
        log(f"  {name}")

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
        "How to read the columns (↑: higher is better, ↓: lower is better; all on frozen encoder features; "
        f"few-label probe: mean of {results['eval_draws']} label draws; alignment and WDM on two views of the test "
        "samples made as in training, uniformity on the clean test samples):",
        "",
        *[f"* **{HEADERS[m]}**: {METRIC_TEXT[m]}." for m in METRICS],
        "",
        "Values are mean ± sample std over seeds (the split is fixed; seeds change initialisation, batches and "
        "augmentations). " + BASELINE_TEXT,
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
    lines += ["## What the numbers say", ""]
    lines += [f"* {sentence}" for sentence in conclusions(results)]
    lines += ["", "## Figures", ""]
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

    tied = [LABELS.get(m, m) for m in methods
            if m != best and means[best] - means[m] <= difference(table, best, m, "probe_few", seeds)[1]]
    if tied:
        return text + f"; not distinguishable from it (gap < 2 standard errors): {', '.join(tied)}."
    return text + "; every other method is more than 2 standard errors below it."


def _label(method: str) -> str:
    return LABELS.get(method, method)


#: Pairs (GCA method, its one-step counterpart) compared in the conclusions.
GCA_PAIRS = (("gca_infonce", "infonce"), ("gca_rince", "rince"))


def difference(table: dict[str, Any], a: str, b: str, metric: str, seeds: int) -> tuple[float, float]:
    """``(mean_a - mean_b, 2 * standard error of that difference)`` over ``seeds`` seeds per method."""
    gap = table[a]["mean"][metric] - table[b]["mean"][metric]
    spread = math.sqrt((table[a]["std"][metric] ** 2 + table[b]["std"][metric] ** 2) / seeds)
    return gap, 2 * spread


def conclusions(results: dict[str, Any]) -> list[str]:
    """Sentences a reader can take from the tables, each computed from the numbers: training against the untrained
    encoder, GCA against its one-step counterpart, robustness to the corruption (when both conditions ran), the
    untrained encoder's kNN and alignment, and a bottom line. A difference is called real only when it exceeds two
    standard errors of the difference of the seed means."""
    seeds, methods, tables = results["seeds"], list(results["methods"]), results["results"]
    label = _label
    if seeds < 2:
        return ["One seed only: there is no spread to compare differences against, so no conclusion is drawn. "
                "Run more seeds (`--seeds 5`)."]
    out = []
    for condition, table in tables.items():
        below = [m for m in methods if difference(table, m, "untrained", "probe_few", seeds)[0]
                 <= difference(table, m, "untrained", "probe_few", seeds)[1]]
        if not below:
            out.append(f"{condition}: every trained method beats the untrained encoder on the few-label probe by more "
                       "than two standard errors.")
        else:
            out.append(f"{condition}: not clearly above the untrained encoder on the few-label probe: "
                       f"{', '.join(label(m) for m in below)}.")
    for gca, base in GCA_PAIRS:
        if gca not in methods or base not in methods:
            continue
        parts, real = [], 0
        for condition, table in tables.items():
            gap, bound = difference(table, gca, base, "probe_few", seeds)
            real += abs(gap) > bound
            parts.append(f"{gap:+.3f} {condition} (2 SE {bound:.3f})")
        verdict = ("within two standard errors everywhere: the Sinkhorn iterations make no difference that these "
                   "seeds can show" if real == 0 else f"beyond two standard errors in {real} condition(s)")
        out.append(f"{label(gca)} − {label(base)} on the few-label probe: {', '.join(parts)}; {verdict}.")
    if "clean" in tables and "corrupted" in tables:
        drops = {m: tables["clean"][m]["mean"]["probe_few"] - tables["corrupted"][m]["mean"]["probe_few"]
                 for m in methods}
        best = max(methods, key=lambda m: tables["corrupted"][m]["mean"]["probe_few"])
        tied = [m for m in methods if m != best
                and difference(tables["corrupted"], best, m, "probe_few", seeds)[0]
                <= difference(tables["corrupted"], best, m, "probe_few", seeds)[1]]
        out.append("Under corruption the few-label probe changes by "
                   + ", ".join(f"{-drops[m]:+.3f} ({label(m)})" for m in methods)
                   + " (corrupted minus clean; negative = a drop)"
                   + f"; the best corrupted score is {label(best)}'s"
                   + (f", not distinguishable from {', '.join(label(m) for m in tied)}." if tied else
                      ", more than two standard errors above every other method."))
    for condition, table in tables.items():
        floor = table["untrained"]["mean"]
        trained_best = max(methods, key=lambda m: table[m]["mean"]["knn"])
        if floor["knn"] > table[trained_best]["mean"]["knn"]:
            out.append(f"{condition}: the untrained encoder has the highest kNN accuracy ({floor['knn']:.3f} against "
                       f"{table[trained_best]['mean']['knn']:.3f} for {label(trained_best)}): random features already "
                       "keep the neighbourhoods of small inputs, and kNN does not reward what training adds.")
        if floor["alignment"] < min(table[m]["mean"]["alignment"] for m in methods):
            out.append(f"{condition}: the untrained encoder has the smallest alignment ({floor['alignment']:.3f}) with "
                       f"uniformity {floor['uniformity']:.3f}: its features barely move, for any input; that is not "
                       "invariance learned from the views.")
    behind: dict[str, list[str]] = {m: [] for m in methods}  # method -> conditions where it trails the best
    for condition, table in tables.items():
        best = max(methods, key=lambda m: table[m]["mean"]["probe_few"])
        for m in methods:
            gap, bound = difference(table, best, m, "probe_few", seeds)
            if gap > bound:
                behind[m].append(condition)
    level = [label(m) for m in methods if not behind[m]]
    trailing = [f"{label(m)} ({', '.join(conditions)})" for m, conditions in behind.items() if conditions]
    if not trailing:
        out.append("Bottom line: in every condition all methods are within two standard errors of the best one, so "
                   "this run does not rank them; more seeds or harder data are needed to separate them.")
    else:
        out.append(f"Bottom line: within two standard errors of the best method in every condition: "
                   f"{', '.join(level) or 'none'}; more than two standard errors behind the best: "
                   f"{', '.join(trailing)}. The first group cannot be ranked by this run.")
    return out
