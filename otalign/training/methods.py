"""Method registry: a name -> how to build the model the trainer optimises.

Contrastive methods wrap an ``otalign.losses`` loss in a :class:`~otalign.training.models.ContrastiveModel`;
``"byol"`` and ``"simsiam"`` build their own models (predictor, stop-gradient, EMA target). Add a method with
:func:`register_method`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .byol import BYOL
from .config import Config
from .heads import mlp_head
from .models import ContrastiveModel, SSLModel
from .simsiam import SimSiam
from .target_rules import target_rule

Builder = Callable[[Config, nn.Module, nn.Module, bool], SSLModel]


@dataclass(frozen=True)
class Method:
    """A registered method: ``build(config, encoder, projector, distributed) -> SSLModel`` and a one-line
    ``description``; ``has_plan`` says whether it solves a transport plan (worth plotting)."""

    name: str
    build: Builder
    description: str
    has_plan: bool = True


METHODS: dict[str, Method] = {}

# name -> (class in otalign.losses, the config fields it takes, needs labels, description)
LOSS_METHODS: dict[str, tuple[str, tuple[str, ...], bool, str]] = {
    "infonce": ("InfoNCE", ("temperature",), False, "InfoNCE: KL to the pairing target, rows-only plan"),
    "ntxent": ("NTXent", ("temperature",), False, "NT-Xent as SimCLR writes it"),
    "gca_infonce": (
        "GCAInfoNCE", ("temperature", "iterations"), False, "GCA-INCE: KL to the pairing target, Sinkhorn plan"
    ),
    "rince": ("RINCE", ("temperature", "q", "lam"), False, "RINCE: robust divergence, rows-only plan"),
    "gca_rince": (
        "GCARINCE", ("temperature", "iterations", "q", "lam"), False, "GCA-RINCE: robust divergence, Sinkhorn plan"
    ),
    "gca_uot": (
        "GCAUOT",
        ("temperature", "iterations", "rho", "q", "lam", "r1", "r2"),
        False,
        "GCA-UOT: r1 KL + r2 robust, soft (unbalanced) marginals",
    ),
    "supcon": ("SupCon", ("temperature",), True, "supervised contrastive: target from labels"),
}


def register_method(name: str, description: str, has_plan: bool = True) -> Callable[[Builder], Builder]:
    """Decorator registering ``build(config, encoder, projector, distributed) -> SSLModel`` under ``name``.

    Example::

        >>> @register_method("mine", "my loss")
        ... def build(config, encoder, projector, distributed):
        ...     return ContrastiveModel(encoder, projector, MyLoss(temperature=config.temperature))
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")

    def decorator(build: Builder) -> Builder:
        METHODS[name] = Method(name, build, description, has_plan)
        return build

    return decorator


def get_method(name: str) -> Method:
    """The registered :class:`Method` called ``name``."""
    if name not in METHODS:
        raise ValueError(f"method: unknown {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


def build_model(
    config: Config, encoder: nn.Module, projector: nn.Module, distributed: bool = False, meta_names: tuple[str, ...] = ()
) -> SSLModel:
    """The model of ``config.method`` around ``encoder`` and ``projector``, with the target rule of
    ``config.target`` (``meta_names``: the dataset's metadata, e.g. ``("domain",)``). Settings the method would
    ignore are errors (:func:`check_settings`)."""
    check_settings(config)
    rule = target_rule(config, meta_names)
    model = get_method(config.method).build(config, encoder, projector, distributed)
    if rule is not None:
        if not isinstance(model, ContrastiveModel):
            raise ValueError(f"target: method {config.method!r} takes no target plan")
        model.rule = rule
    return model


def check_settings(config: Config) -> None:
    """Warn when the config sets a loss parameter its method does not use (a sweep may share one file across
    methods); raise when it asks for a solver or a target the method cannot use."""
    name = config.method
    get_method(name)
    fields = LOSS_METHODS[name][1] if name in LOSS_METHODS else ()
    ignored = [field_name for field_name in config.set_loss_fields if field_name not in fields]
    if ignored:
        takes = ", ".join(f for f in fields if f != "temperature") or "no loss parameter besides temperature"
        warnings.warn(f"{', '.join(ignored)}: not used by method {name!r} (it takes {takes}); ignored",
                      UserWarning, stacklevel=3)
    solves = name in LOSS_METHODS and name != "ntxent"
    if not solves and (config.solver != "sinkhorn" or config.solver_options):
        raise ValueError(f"solver: method {name!r} solves no transport plan")
    if config.target != "pairing" and (not solves or (name == "supcon" and config.target != "labels")):
        what = "its target is the labels" if name == "supcon" else "it takes no target plan"
        raise ValueError(f"target: method {name!r} cannot use --target {config.target} ({what})")


def make_loss(name: str, config: Config, distributed: bool = False) -> nn.Module:
    """The ``otalign.losses`` loss of a contrastive method, with the config's parameters that it takes and its
    solver."""
    from .. import losses

    class_name, fields, _, _ = LOSS_METHODS[name]
    kwargs = {key: value for key, value in config.loss_kwargs.items() if key in fields}
    if distributed:
        kwargs["gather_distributed"] = True
    if name != "ntxent":
        kwargs.update(solver=config.solver, solver_options=config.solver_options)
    return getattr(losses, class_name)(**kwargs)


def _contrastive_builder(name: str) -> Builder:
    uses_labels = LOSS_METHODS[name][2]

    def build(config: Config, encoder: nn.Module, projector: nn.Module, distributed: bool) -> SSLModel:
        return ContrastiveModel(encoder, projector, make_loss(name, config, distributed), uses_labels=uses_labels)

    return build


for _name, (_, _, _, _description) in LOSS_METHODS.items():
    register_method(_name, _description, has_plan=_name != "ntxent")(_contrastive_builder(_name))


@register_method("byol", "BYOL: predictor + EMA target network, no negatives", has_plan=False)
def _build_byol(config: Config, encoder: nn.Module, projector: nn.Module, distributed: bool) -> SSLModel:
    dim = config.projection_dim
    return BYOL(encoder, projector, mlp_head(dim, config.hidden_dim, dim), base_tau=config.ema_tau)


@register_method("simsiam", "SimSiam: predictor + stop-gradient, no negatives", has_plan=False)
def _build_simsiam(config: Config, encoder: nn.Module, projector: nn.Module, distributed: bool) -> SSLModel:
    dim = config.projection_dim
    return SimSiam(encoder, projector, mlp_head(dim, max(1, config.hidden_dim // 4), dim))
