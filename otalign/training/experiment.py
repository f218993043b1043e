"""One experiment from a config: data -> networks -> model -> training -> evaluation -> files and plots."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .. import targets
from .config import Config
from .data import TensorData, build_networks, load_data
from .ddp import barrier, setup, unwrap
from .evaluate import EVAL_STREAM, evaluate
from .methods import build_model, get_method
from .modality import with_defaults
from .models import ContrastiveModel, SSLModel
from .rng import derived_seed, generator, seed_everything
from .trainer import Trainer

RESULTS = "results.json"
PLAN_SAMPLES = 32  # samples in the batch whose plan is drawn (a 64 x 64 plan for two views)


def train(config: Config, data: Optional[TensorData] = None, *, stop_after: Optional[int] = None,
          check_evaluation: bool = False) -> Trainer:
    """Seed, build the data (unless given), networks and model of ``config``, train (resuming from
    ``out/checkpoint.pt`` when allowed), and return the :class:`Trainer` (``.model``, ``.history``, ``.device``).
    ``check_evaluation``: refuse, before training, evaluation settings the data cannot satisfy
    (:func:`check_evaluation_settings`)."""
    config = with_defaults(config)
    info, device = setup(config.device)
    seed_everything(config.seed)
    data = data if data is not None else load_data(config, device)
    if check_evaluation:
        check_evaluation_settings(config, data)
    encoder, projector = build_networks(config, data.in_shape)
    model = build_model(config, encoder, projector, distributed=info.enabled, meta_names=tuple(data.train_meta))
    trainer = Trainer(config, model, data, info=info, device=device)
    trainer.fit(stop_after=stop_after)
    return trainer


def run_experiment(
    config: Config,
    data: Optional[TensorData] = None,
    *,
    plots: bool = True,
    stop_after: Optional[int] = None,
) -> dict[str, Any]:
    """Train ``config.method`` and evaluate its frozen encoder; return ``{"config", "history", "evaluation",
    "seconds"}`` (also written to ``out/results.json`` by rank 0, with ``out/loss.png`` and, for methods that solve
    a plan, ``out/plan.png``).

    Args:
        config: the run's settings.
        data: preloaded data (e.g. shared by the demo's runs); loaded from the config when None.
        plots: draw the figures.
        stop_after: stop (and checkpoint) after this epoch without evaluating; resume later with the same config.

    Example::

        >>> result = run_experiment(Config(method="gca_uot", epochs=40, out="runs/uot"))
        >>> result["evaluation"]["probe_few"]
    """
    start = time.perf_counter()
    config = with_defaults(config)
    evaluation_data = None
    if config.held_out_domain is not None:  # evaluated on every domain, the held-out one included
        evaluation_data = load_data(config.replace(held_out_domain=None), torch.device("cpu"))
        check_evaluation_settings(config, evaluation_data)
    trainer = train(config, data, stop_after=stop_after, check_evaluation=evaluation_data is None)
    result: dict[str, Any] = {"config": config.to_dict(), "history": trainer.history}
    if stop_after is not None and trainer.epoch < config.epochs:
        return result
    plain, data, device = unwrap(trainer.model), trainer.data, trainer.device
    if trainer.info.is_main:
        if evaluation_data is not None:
            data = evaluation_data
        result["evaluation"] = evaluate(plain.encoder, data, config, device)
        result["seconds"] = time.perf_counter() - start
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / RESULTS).write_text(json.dumps(result, indent=2))
        if plots:
            draw_run_plots(plain, data, config, trainer.history, device)
    barrier(trainer.info)
    return result


def check_evaluation_settings(config: Config, data: TensorData) -> None:
    """Raise before training when the evaluation cannot run: the few-label probe's ``eval_labels_per_class`` must
    not exceed the smallest class of the training split."""
    if config.eval_labels_per_class <= 0:
        return
    classes, counts = torch.unique(data.train_y, return_counts=True)
    smallest = int(counts.argmin())
    if int(counts[smallest]) < config.eval_labels_per_class:
        raise ValueError(
            f"eval_labels_per_class: {config.eval_labels_per_class} labels per class, but class "
            f"{int(classes[smallest])} has only {int(counts[smallest])} training samples; lower "
            f"--eval-labels-per-class (0 turns the few-label probe off) or use more data (--subset)"
        )


def untrained_evaluation(config: Config, data: TensorData, device: torch.device) -> dict[str, float]:
    """The evaluation numbers of a freshly initialised encoder (seeded with ``config.seed``): the baseline that
    SSL must beat."""
    seed_everything(config.seed)
    encoder, _ = build_networks(config, data.in_shape)
    return evaluate(encoder.to(device), data, config, device)


def plan_samples(n_test: int, samples: int = PLAN_SAMPLES) -> torch.Tensor:
    """Indices of the test samples whose plan is drawn: ``samples`` evenly spaced over the test set (the test set
    is often sorted by domain or class; its first samples would all share one)."""
    return torch.linspace(0, n_test - 1, min(samples, n_test)).round().long().unique()


def plan_of_batch(
    model: SSLModel, data: TensorData, config: Config, device: torch.device, samples: int = PLAN_SAMPLES
) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """``(plan, target)`` ``(2n, 2n)`` of the model's loss on two views of ``samples`` test samples spread over
    the test set (:func:`plan_samples`), with the model in eval mode: the target is the run's own (the model's
    target rule on those samples' labels and metadata, the labels for SupCon, else the pairing), and the plan is
    solved against it. ``None`` when the method solves no plan (BYOL, SimSiam, NT-Xent)."""
    criterion = getattr(model, "criterion", None)
    if not isinstance(model, ContrastiveModel) or not hasattr(criterion, "align"):
        return None
    if getattr(criterion, "gather_distributed", False):  # called on rank 0 alone: a collective would never return
        criterion = copy.copy(criterion)
        criterion.gather_distributed = False
    index = plan_samples(data.test_x.shape[0], samples)
    x = data.test_x[index].to(device)
    labels = data.test_y[index].to(device)
    meta = {key: value[index].to(device) for key, value in data.test_meta.items()}
    n = x.shape[0]
    if model.rule is not None:
        target = model.rule(labels, meta, 2).to(device=device, dtype=torch.float32)
    elif model.uses_labels:
        target = targets.from_labels(labels).to(device)
    else:
        target = targets.paired(n, device=device)
    x0, x1 = data.views(x, generator(derived_seed(config.seed, EVAL_STREAM, 1)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z0, z1 = model.project_pair(x0, x1)
            alignment = criterion.align(z0.float(), z1.float(), target=target)
    finally:
        model.train(was_training)
    return alignment.plan.matrix.detach().cpu(), target.cpu()


def draw_run_plots(
    model: nn.Module, data: TensorData, config: Config, history: list[dict[str, Any]], device: torch.device
) -> None:
    """``loss.png`` (loss per epoch) and ``plan.png`` (the learned plan next to its target, one batch)."""
    from .. import plots

    out = Path(config.out)
    if history:
        plots.loss_curves({config.method: [[record["loss"] for record in history]]}, out / "loss.png")
    pair = plan_of_batch(model, data, config, device) if get_method(config.method).has_plan else None
    if pair is not None:
        plots.plan_and_target(pair[0].numpy(), pair[1].numpy(), out / "plan.png", title=f"{config.method}, target {_target_name(model)}, one batch")



def _target_name(model: nn.Module) -> str:
    rule = getattr(model, "rule", None)
    if rule is not None:
        return rule.identity.split("@")[0]
    return "labels" if getattr(model, "uses_labels", False) else "pairing"
