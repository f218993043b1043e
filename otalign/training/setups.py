"""Contrastive setups with a target plan built from side information: domain priors, label hierarchies, and
leave-one-domain-out evaluation (docs/maths.md, section 3: any non-negative ``P_tgt`` is a valid target).

The trainer hands a model each batch's ``labels``; here the stored "labels" are sample indices ``(N,)`` so that a
rule can look up any per-sample metadata (domain, fine and coarse class) of the batch and build the batch's target,
e.g. ``targets.domain_prior(domains[index], alpha, beta)``. (From the command line and configs, ``--target`` does
the same with the dataset's own metadata: :mod:`otalign.training.target_rules`.) Evaluation uses linear probes on
frozen encoder features (:func:`probe`).

Example::

    >>> rule = domain_target(domains, alpha=0.01, beta=0.0)
    >>> encoder = train_with_target(config, x, views, rule)
    >>> features = extract_features(encoder, x)
    >>> train, test = leave_one_domain_out(domains, held_out=2)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import metrics, targets
from ..arrays import as_labels
from .config import Config
from .data import TensorData, ViewMaker, build_networks, stratified_split
from .ddp import resolve_device
from .evaluate import extract_features
from .methods import LOSS_METHODS, make_loss
from .models import ContrastiveModel
from .rng import seed_everything
from .target_rules import TargetRule
from .trainer import Trainer


def domain_target(domains: Tensor, alpha: float, beta: float) -> TargetRule:
    """The batch target ``targets.domain_prior(domains[index], alpha, beta)`` of the samples ``index`` (instance
    pairs weigh 1, other same-domain pairs ``alpha``, cross-domain pairs ``beta``): ``rule(index) -> (2B, 2B)``."""
    domains = as_labels("domains", domains).cpu()
    return TargetRule(
        f"domain-prior(alpha={alpha:g}, beta={beta:g}) over domains {_digest(domains)}",
        lambda index, meta, views: targets.domain_prior(domains[index.cpu()], alpha, beta, views),
    )


def hierarchical_target(levels: Sequence[Tensor], weights: Sequence[float]) -> TargetRule:
    """The batch target ``targets.hierarchical([level[index] for level in levels], weights)``; pass
    ``torch.arange(N)`` as the first level to keep the instance pairing."""
    levels = [as_labels(f"levels[{i}]", level).cpu() for i, level in enumerate(levels)]
    weights = list(weights)
    return TargetRule(
        f"hierarchical(weights={weights}) over levels {[_digest(level) for level in levels]}",
        lambda index, meta, views: targets.hierarchical([level[index.cpu()] for level in levels], weights, views),
    )


def _digest(values: Tensor) -> str:
    return hashlib.sha256(values.contiguous().numpy().tobytes()).hexdigest()[:12]


def train_with_target(
    config: Config,
    x: Tensor,
    views: ViewMaker,
    rule: TargetRule,
    in_shape: Optional[tuple[int, ...]] = None,
    inputs: Optional[Callable[[Tensor], Tensor]] = None,
) -> nn.Module:
    """Train ``config.method`` (a loss of :data:`~otalign.training.methods.LOSS_METHODS` that takes targets) with
    the target ``rule`` on the stored samples ``x (N, ...)``; return the trained encoder (in eval mode).

    ``in_shape`` is one encoder input's shape (default ``x.shape[1:]``); ``inputs`` turns stored samples into
    encoder input (default: identity). Networks come from ``config.modality`` / ``config.encoder``.
    """
    if config.method not in LOSS_METHODS or config.method == "supcon":
        raise ValueError(f"method: expected a contrastive loss that takes targets, got {config.method!r}")
    seed_everything(config.seed)
    index = torch.arange(x.shape[0])
    kwargs = {} if inputs is None else {"inputs": inputs}
    data = TensorData(x, index, x[:2], index[:2], views, in_shape or tuple(x.shape[1:]), **kwargs)
    encoder, projector = build_networks(config, data.in_shape)
    model = ContrastiveModel(encoder, projector, make_loss(config.method, config), rule=rule)
    Trainer(config, model, data, device=resolve_device(config.device)).fit()
    return encoder.eval()


def leave_one_domain_out(domains: Tensor, held_out: int) -> tuple[Tensor, Tensor]:
    """``(train, test)`` sorted index tensors: every sample of the other domains, and every sample of domain
    ``held_out``."""
    if domains.dim() != 1:
        raise ValueError(f"domains: expected (N,) domain ids, got shape {tuple(domains.shape)}")
    held = domains == held_out
    if not bool(held.any()) or bool(held.all()):
        raise ValueError(f"held_out: domain {held_out} must hold some but not all samples")
    return torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()


def probe(features: Tensor, labels: Tensor, split: Optional[tuple[Tensor, Tensor]] = None, seed: int = 0,
          labels_per_class: Optional[int] = None) -> float:
    """Linear-probe accuracy of ``labels (N,)`` from frozen ``features (N, d)``: trained on ``split[0]``, tested on
    ``split[1]`` (default: a stratified 75/25 split drawn with ``seed``)."""
    train, test = split if split is not None else stratified_split(labels, 0.25, seed)
    return metrics.linear_probe(features[train], labels[train], features[test], labels[test],
                                labels_per_class=labels_per_class, seed=seed)


def lodo_accuracy(features: Tensor, labels: Tensor, domains: Tensor) -> dict[int, float]:
    """Class accuracy on each held-out domain of a linear probe trained on the other domains' features."""
    result = {}
    for domain in torch.unique(domains).tolist():
        result[domain] = probe(features, labels, leave_one_domain_out(domains, domain))
    return result


def leave_one_domain_out_run(
    config: Config,
    x: Tensor,
    labels: Tensor,
    domains: Tensor,
    views: ViewMaker,
    alpha: float = 0.0,
    beta: float = 0.0,
    in_shape: Optional[tuple[int, ...]] = None,
    inputs: Optional[Callable[[Tensor], Tensor]] = None,
) -> dict[int, float]:
    """For every domain: train on the other domains' samples (no labels; target ``domain_prior(alpha, beta)``),
    fit a linear probe on their labels and return its class accuracy on the held-out domain. Each fold trains in
    its own folder, ``config.out/fold-<domain>``."""
    result = {}
    for domain in torch.unique(domains).tolist():
        train, test = leave_one_domain_out(domains, domain)
        fold = config.replace(out=str(Path(config.out) / f"fold-{domain}"))
        encoder = train_with_target(fold, x[train], views, domain_target(domains[train], alpha, beta),
                                    in_shape or tuple(x.shape[1:]), inputs)
        result[domain] = probe(features_of(encoder, x, inputs), labels, (train, test))
    return result


def features_of(encoder: nn.Module, x: Tensor, inputs: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
    """Frozen features ``(N, feature_dim)`` of stored samples ``x``."""
    return extract_features(encoder, inputs(x) if inputs is not None else x, batch_size=512)
