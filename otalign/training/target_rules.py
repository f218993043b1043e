"""Target plans of a training run, chosen in the config: ``Config.target`` and its parameters.

A :class:`TargetRule` turns one batch's labels and metadata into the batch's ``(V N, V N)`` target plan (the
view-blocked layout of :mod:`otalign.targets`). Built-in rules:

* ``"pairing"``: the views of each sample (the loss's own default; no rule).
* ``"labels"``: ``targets.from_labels`` (supervised contrast).
* ``"domain-prior"``: ``targets.domain_prior(domains, alpha, beta)``; needs a dataset with ``"domain"`` metadata.
* ``"hierarchical"``: ``targets.hierarchical(levels, weights)`` over ``Config.levels`` (``"instance"``,
  ``"label"``, or a metadata name such as ``"domain"`` or ``"coarse"``) with ``Config.weights``.
* ``"module:function"``: a callable ``(labels (N,), domains (N,) or None, n_views) -> (V N, V N)`` imported by
  name, e.g. ``mypackage.targets:similar_digits``.

Every rule has an :attr:`~TargetRule.identity`: a string that says what it computes (for a custom callable, its
name and a hash of its source), recorded in checkpoints so that a run never resumes another rule's training.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch
from torch import Tensor

from .. import targets
from .config import Config

BUILTIN = ("pairing", "labels", "domain-prior", "hierarchical")


@dataclass(frozen=True)
class TargetRule:
    """``rule(labels, meta, n_views) -> (V N, V N)`` target of a batch, with a stable :attr:`identity`.

    Attributes:
        identity: what the rule computes, e.g. ``"domain-prior(alpha=0.1, beta=0)"``.
        build: ``(labels (N,), meta {name: (N,)}, n_views) -> (V N, V N)``.
    """

    identity: str
    build: Callable[[Tensor, Mapping[str, Tensor], int], Tensor]

    def __call__(self, labels: Tensor, meta: Optional[Mapping[str, Tensor]] = None, n_views: int = 2) -> Tensor:
        return self.build(labels, {} if meta is None else meta, n_views)


def target_rule(config: Config, meta_names: tuple[str, ...] = ()) -> Optional[TargetRule]:
    """The rule ``config.target`` asks for (``None`` for ``"pairing"``), checked against the config's parameters
    and the dataset's metadata names ``meta_names``."""
    name = config.target
    _check_parameters(config)
    if name == "pairing":
        return None
    if name == "labels":
        return TargetRule("labels", lambda labels, meta, views: targets.from_labels(labels, views))
    if name == "domain-prior":
        if "domain" not in meta_names:
            raise ValueError(f"target: 'domain-prior' needs a dataset with domains; {config.dataset!r} has none "
                             f"(e.g. digits-domains, basicmotions-devices, text_domains)")
        alpha, beta = config.alpha or 0.0, config.beta or 0.0
        return TargetRule(
            f"domain-prior(alpha={alpha:g}, beta={beta:g})",
            lambda labels, meta, views: targets.domain_prior(meta["domain"], alpha, beta, views),
        )
    if name == "hierarchical":
        return _hierarchical(config, meta_names)
    if ":" in name:
        return _custom(name)
    raise ValueError(f"target: expected one of {list(BUILTIN)} or 'module:function', got {name!r}")


def _check_parameters(config: Config) -> None:
    """Parameters of one target given with another are errors, never silently ignored."""
    uses = {"domain-prior": ("alpha", "beta"), "hierarchical": ("levels", "weights")}
    for target, names in uses.items():
        for field_name in names:
            if getattr(config, field_name) is not None and config.target != target:
                raise ValueError(f"{field_name}: only used with --target {target}, but the target is "
                                 f"{config.target!r}")


def _hierarchical(config: Config, meta_names: tuple[str, ...]) -> TargetRule:
    if not config.levels or not config.weights:
        raise ValueError("levels, weights: --target hierarchical needs both, e.g. --levels instance,label "
                         "--weights 1,0.5")
    levels = [level.strip() for level in config.levels.split(",") if level.strip()]
    try:
        weights = [float(w) for w in config.weights.split(",") if w.strip()]
    except ValueError:
        raise ValueError(f"weights: expected comma-separated numbers, got {config.weights!r}") from None
    if len(levels) != len(weights):
        raise ValueError(f"levels, weights: one weight per level, got {len(levels)} levels and {len(weights)} weights")
    known = ("instance", "label", *meta_names)
    for level in levels:
        if level not in known:
            raise ValueError(f"levels: unknown level {level!r} for {config.dataset!r}; expected one of {list(known)}")

    def build(labels: Tensor, meta: Mapping[str, Tensor], n_views: int) -> Tensor:
        named = {"instance": torch.arange(labels.shape[0], device=labels.device), "label": labels, **meta}
        return targets.hierarchical([named[level] for level in levels], weights, n_views)

    pairs = ", ".join(f"{level}={weight:g}" for level, weight in zip(levels, weights))
    return TargetRule(f"hierarchical({pairs})", build)


def _custom(path: str) -> TargetRule:
    module_name, _, attribute = path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"target: cannot import {path!r} ({error})") from None
    if not callable(function):
        raise ValueError(f"target: {path!r} is not callable")
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        source = repr(function)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]

    def build(labels: Tensor, meta: Mapping[str, Tensor], n_views: int) -> Tensor:
        out = function(labels, meta.get("domain"), n_views)
        size = n_views * labels.shape[0]
        if not isinstance(out, Tensor) or tuple(out.shape) != (size, size):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"target: {path} returned {got} for a batch of {labels.shape[0]} samples and "
                             f"{n_views} views; expected ({size}, {size})")
        return out

    return TargetRule(f"{path}@{digest}", build)
