"""``otalign demo``: compare contrastive methods on real offline data (scikit-learn's digits) in minutes on a CPU.

Setup (written into the report):

* data: the 1,797 8x8 digits, a fixed 75/25 train/test split; an MLP encoder (features read by evaluation), an MLP
  projection head, Adam with warmup + cosine, batch 256.
* conditions: ``clean`` (both views augmented the usual way) and ``corrupted``: in every batch, a random half of
  the pairs get heavy Gaussian noise (severity 5) on their *second* view, so a clean view is often paired with a
  badly corrupted one. This is the calibration setting of the demo (half of the second views carry
  heavy Gaussian noise) and the one where a robust or unbalanced alignment should help.
* methods: InfoNCE, GCAInfoNCE, RINCE, GCARINCE, GCAUOT (the paper's best) and BYOL, plus the untrained encoder as
  the floor; ``seeds`` seeds each.
* evaluation on frozen encoder features: few-label linear probe (5 labels per class, mean of 5 draws; the number
  that separates methods), full linear probe (saturates on digits), kNN, WDM, uniformity, alignment.

``--modality timeseries`` runs the same comparison on JapaneseVowels (12-channel speech features, 9 speakers,
270 train / 370 test series; a 1-D CNN, sensor augmentations) and ``--modality text`` on WordNet noun definitions
(26 lexicographer-file labels; a tiny randomly initialised BERT trained from scratch, token-deletion/swap views plus
dropout); time series have the clean and corrupted conditions, text only a clean one (:data:`DEMOS`).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from .config import Config
from .data import load_data
from .demo_names import CONDITIONS, LABELS, METRICS
from .ddp import resolve_device, unwrap
from .evaluate import evaluate
from .experiment import plan_of_batch, train, untrained_evaluation
from .methods import get_method
from .report import write_report

DEMO_METHODS = ("infonce", "gca_infonce", "rince", "gca_rince", "gca_uot", "byol")
DEFAULT_EPOCHS = 30
QUICK = {"epochs": 2, "seeds": 1, "subset": 400, "eval_draws": 2}
LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSpec:
    """One modality's demo: the data and network settings shared by its runs, its conditions (config changes),
    default epochs and methods, and the report's title and setup paragraph."""

    dataset: str
    encoder: str
    feature_dim: int
    hidden_dim: int
    projection_dim: int
    epochs: int
    methods: tuple[str, ...]
    conditions: dict[str, dict[str, Any]] = field(default_factory=lambda: {"clean": {"corrupt_severity": 0}})
    title: str = ""
    setup: str = ""
    condition_text: dict[str, str] = field(default_factory=dict)
    lr: float = 2e-3


DEMOS: dict[str, DemoSpec] = {
    "images": DemoSpec("digits", "mlp", 128, 256, 64, DEFAULT_EPOCHS, DEMO_METHODS, CONDITIONS),
    "timeseries": DemoSpec(
        "japanesevowels", "cnn1d", 64, 128, 32, 30, ("infonce", "gca_infonce", "rince", "gca_rince", "gca_uot"),
        title="# otalign demo: contrastive learning as OT alignment on JapaneseVowels (aeon, bundled)",
        setup="Setup: JapaneseVowels, 12 channels (LPC cepstra), 9 speakers, the official 270 train / 370 test split, "
              "series zero-padded to 29 steps and standardised per channel with the training statistics. 1-D CNN "
              "encoder (3 Conv-BN-ReLU blocks of width 32/64/64, global average pooling; 64-d features read by all "
              "evaluations), MLP projection head (32-d), Adam lr 2e-3, batch 256, warmup then cosine decay, "
              "temperature (eps) 0.5; GCA methods use the losses' default Sinkhorn iterations.",
        conditions={"clean": {"corrupt_severity": 0},
                    "corrupted": {"corrupt_severity": 5, "corrupt_view": "second", "corrupt_fraction": 0.5}},
        condition_text={"clean": "both views: random crop, time and magnitude warps (p = 0.5), scaling, jitter",
                        "corrupted": "as clean, plus Gaussian noise of standard deviation 1 (the data's own scale) "
                                     "on the second view of a random half of the pairs"},
    ),
    "text": DemoSpec(
        "wordnet", "tiny_bert", 64, 128, 32, 30, ("infonce", "gca_infonce", "gca_uot"),
        title="# otalign demo: contrastive learning as OT alignment on WordNet noun definitions",
        setup="Setup: WordNet 3 noun definitions (Debian wordnet-base), at most 40 per lexicographer file, labelled "
              "by the 26 noun lexicographer files; a fixed stratified 75/25 split. Encoder: a randomly initialised "
              "2-layer BERT of width 64 (2 heads, word-level tokenizer over the corpus, 32 tokens, mean pooling) "
              "trained from scratch; MLP projection head (32-d), Adam lr 2e-3, batch 256, temperature (eps) 0.5.",
        condition_text={"clean": "each view: random word deletion (p = 0.1) and one word swap, plus BERT dropout "
                                 "(SimCSE)"},
    ),
}


def demo_config(method: str, condition: str, seed: int, epochs: int, out: Path, quick: bool = False,
                modality: str = "images") -> Config:
    """The config of one demo run (the demo's shared settings plus the condition's corruption; ``quick`` cuts the
    training set and the few-label probe's draws)."""
    spec = _spec(modality)
    return Config(
        modality=modality,
        dataset=spec.dataset,
        method=method,
        encoder=spec.encoder,
        feature_dim=spec.feature_dim,
        hidden_dim=spec.hidden_dim,
        projection_dim=spec.projection_dim,
        epochs=epochs,
        batch_size=256,
        lr=spec.lr,
        optimiser="adam",
        weight_decay=1e-5,
        warmup_epochs=2,
        temperature=0.5,
        ema_tau=0.95,
        seed=seed,
        subset=QUICK["subset"] if quick else 0,
        eval_draws=QUICK["eval_draws"] if quick else 5,
        out=str(out / "runs" / condition / method / f"seed{seed}"),
        device="cpu",
        amp=False,
        checkpoint_every=0,
        resume=False,
        quiet=True,
        **spec.conditions[condition],
    )


def _spec(modality: str) -> DemoSpec:
    if modality not in DEMOS:
        raise ValueError(f"modality: no demo for {modality!r}; expected one of {sorted(DEMOS)}")
    return DEMOS[modality]


def run_demo(
    out: Path,
    seeds: int = 5,
    epochs: Optional[int] = None,
    methods: Optional[Sequence[str]] = None,
    quick: bool = False,
    workers: Optional[int] = None,
    log: Optional[Callable[[str], None]] = None,
    modality: str = "images",
) -> dict[str, Any]:
    """Run every (condition, method, seed), evaluate, and write ``report.md``, ``results.json`` and the plots under
    ``out``. ``quick`` is a smoke run (1 seed, 2 epochs, 400 training samples, 2 label draws). Returns the results
    dict.

    Runs are independent and run in ``workers`` processes (default: one per available CPU core, at most 8), each
    with one torch thread: the tensors are tiny, so intra-op threads only add synchronisation (and collapse when
    other programs share the cores). ``workers=1`` runs everything in this process. Results do not depend on
    ``workers``. Worker processes are spawned: from a script, call this under ``if __name__ == "__main__":``.
    ``modality`` picks the data, networks, conditions and default ``methods`` and ``epochs`` (:data:`DEMOS`).
    ``log`` receives one progress line per finished run (default: the ``logging`` logger
    ``"otalign.training.demo"`` at INFO). ``seeds``, ``epochs`` and ``workers`` are integers >= 1.
    """
    spec = _spec(modality)
    methods = spec.methods if methods is None else methods
    for name, value in (("seeds", seeds), ("epochs", epochs), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: expected an integer >= 1 (or None for the default), got {value!r}")
    if not methods:
        raise ValueError("methods: expected at least one method")
    out = Path(out)
    if quick:
        seeds = min(seeds, QUICK["seeds"])
        epochs = QUICK["epochs"] if epochs is None else epochs
    epochs = spec.epochs if epochs is None else epochs
    conditions = spec.conditions
    tasks = [(c, "untrained", s) for c in conditions for s in range(seeds)]
    tasks += [(c, m, s) for c in conditions for m in methods for s in range(seeds)]
    # the untrained encoder is built exactly as the trained runs' (the method does not change the encoder)
    configs = [demo_config(m if m != "untrained" else methods[0], c, s, epochs, out, quick, modality)
               for c, m, s in tasks]
    workers = default_workers() if workers is None else workers
    runs: dict[str, dict[str, list[Any]]] = {c: {m: [None] * seeds for m in ("untrained", *methods)} for c in conditions}
    started = time.perf_counter()
    cpu_seconds = 0.0
    log = log or _log
    log(f"{run_count(len(conditions), len(methods), seeds)} on {workers} worker process(es); each worker first "
        f"loads torch and the data (tens of seconds on a small machine), then a line per finished run")
    for done, ((condition, method, seed), result) in enumerate(_execute(tasks, configs, workers), 1):
        runs[condition][method][seed] = result
        cpu_seconds += result["cpu_seconds"]
        evaluation = result["evaluation"]
        log(
            f"[{done:>3}/{len(tasks)}] {condition:<9} {LABELS.get(method, method):<17} seed {seed}: few-label probe "
            f"{evaluation['probe_few']:.3f}, kNN {evaluation['knn']:.3f} ({result['cpu_seconds']:.1f} s CPU; "
            f"{time.perf_counter() - started:.0f} s elapsed)"
        )
    seconds = time.perf_counter() - started
    results = summarise(runs, methods, seeds, epochs, seconds, quick, conditions)
    results.update(cpu_seconds=cpu_seconds, workers=workers, modality=modality)
    if spec.title:
        results.update(title=spec.title, setup=spec.setup, condition_text=spec.condition_text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log(f"writing {out / 'report.md'} and its figures")
    write_report(results, runs, out, log=log)
    return results


def run_count(conditions: int, methods: int, seeds: int) -> str:
    """``"70 runs (60 training runs, 10 evaluations of the untrained encoder)"``: the counter's total, split."""
    trained, baselines = conditions * methods * seeds, conditions * seeds
    return (f"{trained + baselines} runs ({trained} training runs, {baselines} evaluations of the untrained "
            f"encoder)")


def _log(line: str) -> None:
    LOGGER.info(line)


def default_workers() -> int:
    """One worker per CPU core this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _execute(tasks: list[tuple[str, str, int]], configs: list[Config], workers: int):
    """Yield ``(task, result)`` as runs finish (in order when ``workers == 1``)."""
    if workers == 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for task, config in zip(tasks, configs):
                yield task, _run_task(task[1], config)
        finally:
            torch.set_num_threads(previous)
        return
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has started its thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        futures = {pool.submit(_run_task, task[1], config): task for task, config in zip(tasks, configs)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _init_worker() -> None:
    torch.set_num_threads(1)


_DATA: dict[tuple, Any] = {}


def _run_task(method: str, config: Config) -> dict[str, Any]:
    """One demo run (``method == "untrained"``: evaluation of the initial encoder), with its CPU time."""
    cpu = time.process_time()
    key = (config.modality, config.dataset, config.encoder, config.corrupt_severity, config.corrupt_view,
           config.corrupt_fraction, config.subset)
    if key not in _DATA:
        _DATA[key] = load_data(config, resolve_device("cpu"))
    data = _DATA[key]
    device = resolve_device("cpu")
    if method == "untrained":
        return {"evaluation": untrained_evaluation(config, data, device), "cpu_seconds": time.process_time() - cpu}
    trainer = train(config, data)
    model = unwrap(trainer.model)
    result: dict[str, Any] = {"history": trainer.history, "evaluation": evaluate(model.encoder, data, config, device)}
    if config.seed == 0 and get_method(method).has_plan:
        pair = plan_of_batch(model, data, config, device)
        if pair is not None:
            result["plan"], result["target"] = pair[0].numpy(), pair[1].numpy()
    result["cpu_seconds"] = time.process_time() - cpu
    return result


def summarise(
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    methods: Sequence[str],
    seeds: int,
    epochs: int,
    seconds: float,
    quick: bool,
    conditions: Optional[dict[str, dict[str, Any]]] = None,
) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every metric, per condition and method (plus per-seed values);
    ``conditions`` (default: the image demo's) are recorded with their settings."""
    conditions = CONDITIONS if conditions is None else conditions
    summary: dict[str, Any] = {
        "seeds": seeds,
        "epochs": epochs,
        "methods": list(methods),
        "conditions": {name: dict(settings) for name, settings in conditions.items()},
        "quick": quick,
        "eval_draws": QUICK["eval_draws"] if quick else 5,
        "seconds": seconds,
        "results": {},
    }
    for condition, by_method in runs.items():
        table = {}
        for method, results in by_method.items():
            per_seed = {m: [r["evaluation"][m] for r in results] for m in METRICS}
            table[method] = {
                "mean": {m: _mean(v) for m, v in per_seed.items()},
                "std": {m: _std(v) for m, v in per_seed.items()},
                "per_seed": per_seed,
            }
        summary["results"][condition] = table
    return summary


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _std(values: Sequence[float]) -> float:
    """Sample standard deviation (``n - 1``); 0 for a single value."""
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def short_table(results: dict[str, Any]) -> str:
    """A compact text table (few-label probe and kNN per method and condition) for the terminal."""
    conditions = list(results["results"])
    methods = ["untrained", *results["methods"]]
    header = f"{'method':<18}" + "".join(f"{c + ' few-label':>22}{c + ' kNN':>16}" for c in conditions)
    lines = [header, "-" * len(header)]
    for method in methods:
        row = f"{LABELS.get(method, method):<18}"
        for condition in conditions:
            entry = results["results"][condition][method]
            few = f"{entry['mean']['probe_few']:.3f} ± {entry['std']['probe_few']:.3f}"
            row += f"{few:>22}{entry['mean']['knn']:>16.3f}"
        lines.append(row)
    return "\n".join(lines)

