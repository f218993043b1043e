"""The demo report on a tiny fake results dict: metric directions, the untrained baseline explained, conclusions
computed from the numbers (two-standard-error rule), and the figures."""

from __future__ import annotations

import numpy as np
import pytest

from otalign.training import report
from otalign.training.demo import METRICS, summarise

BASE = {"probe_few": 0.80, "probe_full": 0.95, "knn": 0.90, "wdm": 1.0, "uniformity": -2.0, "alignment": 0.3}


def fake_runs(shift: dict[str, dict[str, float]], seeds: int = 3, noise: float = 0.002):
    """runs[condition][method] = per-seed results: BASE + shift[method][metric] + a deterministic +-noise pattern."""
    runs = {}
    for condition, extra in (("clean", 0.0), ("corrupted", -0.01)):
        runs[condition] = {}
        for method, delta in shift.items():
            per_seed = []
            for seed in range(seeds):
                wiggle = noise * (seed - (seeds - 1) / 2)
                evaluation = {m: BASE[m] + delta.get(m, 0.0) + wiggle + (extra if m == "probe_few" else 0.0)
                              for m in METRICS}
                run = {"evaluation": evaluation}
                if method != "untrained":
                    run["history"] = [{"loss": 5.0 - epoch} for epoch in range(3)]
                    if seed == 0:
                        run["plan"] = np.full((4, 4), 0.25)
                        run["target"] = np.eye(4)[[2, 3, 0, 1]]
                per_seed.append(run)
            runs[condition][method] = per_seed
    return runs


def results_of(runs, seeds: int = 3):
    methods = [m for m in runs["clean"] if m != "untrained"]
    out = summarise(runs, methods, seeds, epochs=3, seconds=1.0, quick=False)
    out.update(cpu_seconds=1.0, workers=1)
    return out


TIED = {"untrained": {"probe_few": 0.0, "knn": 0.05, "alignment": -0.2, "uniformity": 1.5},
        "infonce": {"probe_few": 0.08}, "gca_infonce": {"probe_few": 0.081}}
APART = {"untrained": {}, "infonce": {"probe_few": 0.05}, "gca_infonce": {"probe_few": 0.09}}


def test_every_metric_header_has_a_direction_and_an_explanation():
    for metric in METRICS:
        assert report.HEADERS[metric].endswith(("↑", "↓")), metric
        assert metric in report.METRIC_TEXT
    assert report.HEADERS["wdm"] == "WDM ↑"


def test_ties_are_called_ties_and_the_untrained_baseline_is_explained():
    sentences = report.conclusions(results_of(fake_runs(TIED)))
    text = " ".join(sentences)
    assert "GCAInfoNCE − InfoNCE" in text and "within two standard errors everywhere" in text
    assert "clean: the untrained encoder has the highest kNN accuracy" in text
    assert "the untrained encoder has the smallest alignment" in text
    assert sentences[-1].startswith("Bottom line: in every condition all methods are within two standard errors")
    assert "clean: every trained method beats the untrained encoder" in text


def test_real_differences_are_reported_as_such():
    text = " ".join(report.conclusions(results_of(fake_runs(APART))))
    assert "beyond two standard errors in 2 condition(s)" in text
    assert "+0.040 clean" in text  # GCAInfoNCE minus InfoNCE, from the numbers
    assert "highest kNN accuracy" not in text and "smallest alignment" not in text
    assert "Bottom line: within two standard errors of the best method in every condition: GCAInfoNCE;" in text
    assert "behind the best: InfoNCE (clean, corrupted)" in text


def test_difference_uses_the_standard_error_of_the_difference():
    table = results_of(fake_runs(APART))["results"]["clean"]
    gap, bound = report.difference(table, "gca_infonce", "infonce", "probe_few", 3)
    std = np.std([0.89 - 0.002, 0.89, 0.89 + 0.002], ddof=1)
    assert gap == pytest.approx(0.04) and bound == pytest.approx(2 * np.sqrt(2 * std**2 / 3))


def test_one_seed_draws_no_conclusion():
    sentences = report.conclusions(results_of(fake_runs(APART, seeds=1), seeds=1))
    assert len(sentences) == 1 and sentences[0].startswith("One seed only")


def test_write_report(tmp_path):
    runs = fake_runs(TIED)
    path = report.write_report(results_of(runs), runs, tmp_path)
    text = path.read_text()
    assert "| method | few-label probe (5/class) ↑ | full probe ↑ | kNN ↑ | WDM ↑ | uniformity ↓ | alignment ↓ |" in text
    assert "## What the numbers say" in text and "**untrained encoder**" in text
    assert "higher is better" in text and "lower is better" in text
    for figure in ("accuracy.png", "knn.png", "plans_clean.png", "loss_corrupted.png"):
        assert (tmp_path / figure).stat().st_size > 0 and f"]({figure})" in text


def test_the_corruption_sentence_says_changes_with_the_sign_of_corrupted_minus_clean():
    text = " ".join(report.conclusions(results_of(fake_runs(APART))))
    assert "drops by" not in text
    # fake_runs puts the corrupted few-label probe 0.01 below the clean one for every method
    assert "Under corruption the few-label probe changes by -0.010 (InfoNCE), -0.010 (GCAInfoNCE)" in text


def test_the_run_counter_and_the_summary_count_the_same_runs():
    from otalign.training.demo import run_count

    assert run_count(2, 6, 5) == "70 runs (60 training runs, 10 evaluations of the untrained encoder)"


def test_report_progress_lines_name_each_figure(tmp_path):
    lines = []
    runs = fake_runs(APART)
    report.write_report(results_of(runs), runs, tmp_path, log=lines.append)
    for name in ("accuracy.png", "knn.png", "plans_clean.png", "loss_corrupted.png"):
        assert any(name in line for line in lines), name


def test_demo_and_report_do_not_import_each_other():
    import ast
    from pathlib import Path

    source = Path(report.__file__).read_text()
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert "demo" not in imported
