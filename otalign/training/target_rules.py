"""Target plans of a training run, chosen in the config: ``Config.target`` and its parameters.

A :class:`TargetRule` turns one batch's labels and metadata into the batch's ``(V N, V N)`` target plan (the
view-blocked layout of :mod:`otalign.targets`). Built-in rules:

* ``"pairing"``: the views of each sample (the loss's own default; no rule).
* ``"labels"``: ``targets.from_labels`` (supervised contrast).
* ``"domain-prior"``: ``targets.domain_prior(domains, alpha, beta)``; needs a dataset with ``"domain"`` metadata.
* ``"hierarchical"``: ``targets.hierarchical(levels, weights)`` over ``Config.levels`` (``"instance"``,
  ``"label"``, or a metadata name such as ``"domain"`` or ``"coarse"``) with ``Config.weights``.
* ``"module:function"``: a callable ``(labels (N,), domains (N,) or None, n_views) -> (V N, V N)`` imported by
  name, e.g. ``mypackage.targets:similar_digits`` (the current folder is searched first). Importing it runs the
  module's code, so a config file that names one executes code. It is tried on a small batch before training and
  its output passes the library's target checks on every batch (finite, non-negative, zero diagonal), whatever
  :func:`otalign.set_validation` says; an exception it raises is reported as ``--target``'s.

Every rule has an :attr:`~TargetRule.identity`: a string that says what it computes (for a custom callable, its
name and :func:`~otalign.training.callable_identity.callable_identity`: its source, the module constants it reads,
its arguments), recorded in checkpoints so that a run never resumes another rule's training.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch
from torch import Tensor

from .. import targets
from .callable_identity import callable_identity
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
        return _custom(name, meta_names)
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


def resolve_callable(path: str, flag: str = "--target") -> Callable:
    """The callable named ``module:function`` (``function`` may be dotted: ``module:Class.method``). The current
    folder is searched first (as ``python -m`` does), so a ``mytargets.py`` next to the command is found under the
    ``otalign`` script too. Importing a module runs its code: name only modules you trust."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"target: expected 'module:function' for {flag}, got {path!r}")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        function = importlib.import_module(module_name)
        for part in attribute.split("."):
            function = getattr(function, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"target: cannot import {path!r} for {flag} ({error}); modules are searched in the current "
                         f"folder ({cwd}) and on PYTHONPATH") from None
    finally:
        if added:
            sys.path.remove(cwd)
    if not callable(function) or isinstance(function, type):
        raise ValueError(f"target: {flag} {path} must name a function (labels, domains, n_views) -> (V N, V N) "
                         f"tensor, got {type(function).__name__ if not isinstance(function, type) else 'a class'}")
    return function


#: The batch a custom target is tried on before training: labels, domains (when the dataset has them), views.
PROBE_LABELS = (0, 0, 1, 1)
PROBE_DOMAINS = (0, 1, 0, 1)


def _custom(path: str, meta_names: tuple[str, ...] = ()) -> TargetRule:
    function = resolve_callable(path)
    flag = f"--target {path}"

    def build(labels: Tensor, meta: Mapping[str, Tensor], n_views: int) -> Tensor:
        try:
            out = function(labels, meta.get("domain"), n_views)
        except Exception as error:  # the user's code: any failure is reported as the flag's
            raise ValueError(f"target: {flag} raised {type(error).__name__}: {error}") from error
        return checked_custom_target(out, flag, labels.shape[0], n_views)

    rule = TargetRule(f"{path}@{callable_identity(function)}", build)
    probe = torch.tensor(PROBE_LABELS)
    meta = {"domain": torch.tensor(PROBE_DOMAINS)} if "domain" in meta_names else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-zero probe is an error below, not a warning
        tried = rule(probe, meta, 2)
    if not bool(tried.any()):
        raise ValueError(f"target: {flag} returned an all-zero target on a test batch (labels {list(PROBE_LABELS)}): "
                         f"no pair would be aligned")
    return rule


def checked_custom_target(out, flag: str, n: int, n_views: int) -> Tensor:
    """The library's target checks on a custom rule's output, run whatever :func:`otalign.set_validation` says
    (training skips the loss's own checks): a real ``(V N, V N)`` tensor, finite, non-negative, zero diagonal.
    Integer and boolean targets are converted to float32, as :func:`otalign.targets.check_target` does."""
    size = n_views * n
    if not isinstance(out, Tensor) or tuple(out.shape) != (size, size):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"target: {flag} returned {got} for a batch of {n} samples and {n_views} views; "
                         f"expected a ({size}, {size}) tensor")
    if out.is_complex():
        raise ValueError(f"target: {flag} returned complex values ({out.dtype}); expected real ones")
    if not out.is_floating_point():
        out = out.to(torch.float32)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"target: {flag} returned NaN or inf entries")
    if bool((out < 0).any()):
        raise ValueError(f"target: {flag} returned negative entries; a target plan must be non-negative")
    if bool((out.diagonal() != 0).any()):
        raise ValueError(f"target: {flag} returned a non-zero diagonal; self-pairs are excluded from the plan")
    if not bool(out.any()):
        warnings.warn(f"target: {flag} returned an all-zero target for this batch, so its loss is 0", stacklevel=2)
    return out
