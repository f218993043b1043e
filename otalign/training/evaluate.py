"""Evaluation of a trained model on frozen encoder features (before the projection head).

Reported (docs/maths.md, section 4): a linear probe on all training labels (``probe_full``),
a few-label probe (``probe_few``: ``labels_per_class`` labels per class, mean over ``draws`` label draws), weighted
kNN accuracy (``knn``), and, on the features of two augmented views of the test set made exactly as in training
(including the corrupted view, if any), Wang & Isola's ``alignment`` and the Wasserstein dependency measure
``wdm``. ``uniformity`` is computed on the features of the un-augmented test images. Datasets with domains add the
per-domain numbers of :mod:`otalign.training.domain_eval` (domain probe, in-domain and held-out-domain accuracy).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .. import metrics
from .config import Config
from .data import TensorData
from .domain_eval import domain_evaluation
from .rng import derived_seed, generator

EVAL_STREAM = 7_919  # separates the evaluation views' random stream from the training epochs'


@torch.no_grad()
def extract_features(encoder: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """``encoder(x)`` in eval mode, in batches, as float32 ``(N, feature_dim)``; restores the training mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        parts = [encoder(x[start:start + batch_size]).float() for start in range(0, x.shape[0], batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(parts)


def evaluate(encoder: nn.Module, data: TensorData, config: Config, device: Optional[torch.device] = None) -> dict[str, float]:
    """All evaluation numbers of one run, as a flat dict of floats.

    Args:
        encoder: the (frozen) encoder.
        data: the run's data; its view maker makes the two test views exactly as in training.
        config: supplies ``eval_labels_per_class``, ``eval_draws``, ``knn_k``, ``wdm_eps`` and ``seed``.
    """
    device = device or next(encoder.parameters()).device
    train_f = extract_features(encoder, data.inputs(data.train_x.to(device)))
    test_f = extract_features(encoder, data.inputs(data.test_x.to(device)))
    train_y, test_y = data.train_y.to(device), data.test_y.to(device)
    results = {
        "probe_full": metrics.linear_probe(train_f, train_y, test_f, test_y),
        "knn": metrics.knn_accuracy(train_f, train_y, test_f, test_y, k=config.knn_k),
    }
    if config.eval_labels_per_class > 0:
        results["probe_few"] = metrics.linear_probe(
            train_f, train_y, test_f, test_y,
            labels_per_class=config.eval_labels_per_class, draws=config.eval_draws, seed=config.seed,
        )
    x0, x1 = data.views(data.test_x.to(device), generator(derived_seed(config.seed, EVAL_STREAM)))
    f0, f1 = extract_features(encoder, x0), extract_features(encoder, x1)
    results["alignment"] = metrics.alignment(f0, f1)
    results["uniformity"] = metrics.uniformity(test_f)
    results["wdm"] = metrics.wdm(f0, f1, eps=config.wdm_eps, seed=config.seed)
    if data.domains is not None:
        train_d, test_d = (d.to(device) for d in data.domains)
        results.update(domain_evaluation(train_f, train_y, train_d, test_f, test_y, test_d,
                                         held_out=config.held_out_domain))
    return results
