"""One experiment's settings: a dataclass loadable from JSON or TOML and overridable from command-line flags.

Fields left at ``None`` mean "the component's own default" (e.g. a loss's default ``iterations``), so a config file
only needs to name what it changes. TOML has no null: leave such a key out.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..registry import resolve_solver

OPTIMISERS = ("sgd", "adam", "adamw", "lars")
DOMAIN_ALIGNMENTS = ("sinkhorn", "sliced", "gaussian")
CORRUPT_VIEWS = ("first", "second", "both")


@dataclass
class Config:
    """Settings of one training run.

    Data and model:
        modality, dataset: which registered modality (:mod:`otalign.training.modality`) and which of its datasets
            (``"images"``: ``"digits"``, ``"digits-domains"``, ``"cifar10"``...; ``"timeseries"``:
            ``"basicmotions"``, ``"basicmotions-devices"``, ``"gunpoint"``, ...; ``"text"``: ``"wordnet"``,
            ``"fortunes"``, ``"text_domains"``). ``dataset`` and ``encoder`` left at ``None`` take the modality's
            defaults (its first dataset and encoder), filled in where a run starts
            (:func:`otalign.training.modality.with_defaults`: a settings object runs no plug-in discovery).
        encoder: the modality's encoder name (images ``"mlp"``, ``"cnn"``, ``"resnet18"``; time series ``"cnn1d"``,
            ``"tcn"``; text ``"tiny_bert"``, ``"minilm"``, ``"minilm_frozen"``).
        feature_dim: encoder output size (the frozen features that evaluation reads).
        hidden_dim: hidden width of the MLP encoder and of the projection/predictor heads.
        projection_dim: output size of the projection head (what the loss sees).
        subset: use only ``subset`` evenly spaced training samples (0 = all); for smoke runs and tests.
        data_root: where torchvision datasets live (ignored for bundled datasets).

    Method:
        method: (see :mod:`otalign.training.methods`) ``"infonce"``, ``"gca_infonce"``, ``"rince"``,
            ``"gca_rince"``, ``"gca_uot"``, ``"supcon"``, ``"ntxent"``, ``"byol"``, ``"simsiam"``.
        temperature: the entropic strength eps of the OT losses (= the contrastive temperature).
        iterations, rho, q, lam, r1, r2: loss parameters; ``None`` keeps the loss's default. Setting one that the
            method does not use is an error.
        solver, solver_options: the OT solver of the loss (a registered name, :mod:`otalign.solvers`) and its
            constructor options, e.g. ``solver="proximal"``, ``solver_options={"inner_iter": 5}``.
        target: the target plan of each batch: ``"pairing"`` (default: the views of a sample), ``"labels"``
            (supervised), ``"domain-prior"`` (``alpha``, ``beta``; needs a dataset with domains),
            ``"hierarchical"`` (``levels``, ``weights``), or ``"module:function"`` naming a callable
            ``(labels (N,), domains (N,) or None, n_views) -> (V N, V N)`` (:mod:`otalign.training.target_rules`).
        alpha, beta: the domain prior's same-domain and cross-domain weights.
        levels, weights: the hierarchical target's levels, comma-separated, from ``"instance"``, ``"label"`` and
            the dataset's metadata names (``"domain"``, ``"coarse"``), and one weight per level.
        ema_tau: BYOL's base target momentum (rises to 1 along a cosine over training).
        domain_alignment, domain_weight: add ``domain_weight`` (default 1) times a divergence between the encoder
            features of the batch's domains to the loss: ``"sinkhorn"``, ``"sliced"`` or ``"gaussian"``
            (:mod:`otalign.training.domain_alignment`; needs a dataset with domains).

    Optimisation:
        epochs: training epochs.
        batch_size: global batch size, over all processes.
        lr: peak learning rate, reached after warmup.
        optimiser: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"lars"``.
        momentum: for sgd and lars.
        weight_decay: L2 weight decay.
        warmup_epochs: linear warmup, capped at half of the training steps, then cosine decay to 0 (updated every
            step).

    Views:
        corrupt_severity: Gaussian-noise severity (1-5) applied to ``corrupt_view``; 0 = clean views.
        corrupt_view: ``"first"``, ``"second"`` or ``"both"``.
        corrupt_fraction: fraction of the pairs whose ``corrupt_view`` is corrupted (drawn per batch).

    Run:
        held_out_domain: train without this domain's samples (leave-one-domain-out); evaluation then reports the
            class accuracy on it.
        seed: the run's seed (initialisation, batches, augmentations).
        out: output folder.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        amp: mixed precision (used on CUDA only).
        checkpoint_every: epochs between checkpoints; 0 = only when stopping early.
        resume: continue from ``out/checkpoint.pt`` when it exists.
        quiet: no progress bars.
        eval_labels_per_class, eval_draws: the few-label probe's labels per class and label draws.
        knn_k, wdm_eps: kNN's k and the WDM's entropic strength.

    Every numeric field must lie in its interval of :data:`RANGES` (e.g. ``0 < lr <= 10``, ``0 <= seed < 2**63``);
    NaN and inf are refused everywhere except ``rho = inf``.

    Example::

        >>> config = Config(method="gca_uot", epochs=40, corrupt_severity=3)
        >>> config = load_config("run.toml", overrides={"seed": 1})
    """

    modality: str = "images"
    dataset: Optional[str] = None
    method: str = "infonce"
    encoder: Optional[str] = None
    feature_dim: int = 128
    hidden_dim: int = 256
    projection_dim: int = 64
    subset: int = 0
    data_root: str = "data"

    temperature: float = 0.5
    iterations: Optional[int] = None
    rho: Optional[float] = None
    q: Optional[float] = None
    lam: Optional[float] = None
    r1: Optional[float] = None
    r2: Optional[float] = None
    solver: str = "sinkhorn"
    solver_options: dict[str, Any] = field(default_factory=dict)
    target: str = "pairing"
    alpha: Optional[float] = None
    beta: Optional[float] = None
    levels: Optional[str] = None
    weights: Optional[str] = None
    ema_tau: float = 0.99

    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    optimiser: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 1e-5
    warmup_epochs: int = 2

    corrupt_severity: int = 0
    corrupt_view: str = "second"
    corrupt_fraction: float = 1.0

    domain_alignment: Optional[str] = None
    domain_weight: Optional[float] = None

    held_out_domain: Optional[int] = None
    seed: int = 0
    out: str = "runs/otalign"
    device: str = "auto"
    amp: bool = True
    checkpoint_every: int = 1
    resume: bool = True
    quiet: bool = False
    eval_labels_per_class: int = 5
    eval_draws: int = 5
    knn_k: int = 20
    wdm_eps: float = 0.05

    def __post_init__(self) -> None:
        self.validate()  # settings only: the modality's defaults are filled where a run starts (modality.with_defaults)

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value is out of range: every number is a real number (not a
        bool or a string) in its interval of :data:`RANGES` (finite, except where the interval closes on ``inf``);
        numbers without an entry need only be finite, or integers for integer fields."""
        for name, spec in FIELDS.items():
            if str(spec.type) in NUMERIC_TYPES:
                _check_number(name, str(spec.type), getattr(self, name))
        for name in ("temperature", "wdm_eps"):  # used as 1 / value
            if not math.isfinite(1.0 / getattr(self, name)):
                raise ValueError(f"{name}: {getattr(self, name)!r} is too small (its inverse overflows)")
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser: expected one of {OPTIMISERS}, got {self.optimiser!r}")
        if self.domain_alignment is not None and self.domain_alignment not in DOMAIN_ALIGNMENTS:
            raise ValueError(f"domain_alignment: expected one of {DOMAIN_ALIGNMENTS}, got {self.domain_alignment!r}")
        if self.corrupt_view not in CORRUPT_VIEWS:
            raise ValueError(f"corrupt_view: expected one of {CORRUPT_VIEWS}, got {self.corrupt_view!r}")
        if not isinstance(self.solver_options, dict) or not all(isinstance(k, str) for k in self.solver_options):
            raise ValueError(f"solver_options: expected a table of option names to values, got {self.solver_options!r}")
        resolve_solver(self.solver, self.solver_options, options_name="solver_options")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied (validated)."""
        return config_from_dict({**self.to_dict(), **changes})

    @property
    def set_loss_fields(self) -> list[str]:
        """The loss parameters given explicitly (not ``None``), besides the temperature."""
        return [name for name in ("iterations", "rho", "q", "lam", "r1", "r2") if getattr(self, name) is not None]

    @property
    def loss_kwargs(self) -> dict[str, Any]:
        """The loss parameters that are set (not ``None``), by the losses' keyword names."""
        names = ("temperature", "iterations", "rho", "q", "lam", "r1", "r2")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}

INF = math.inf
MAX_LR = 10.0
MAX_SEED = 2**63 - 1  # torch, numpy's SeedSequence and the derived per-epoch seeds take 63-bit seeds
#: Allowed interval of each numeric field: (left bracket, low, high, right bracket); ``None`` values pass for
#: optional fields ("the component's default"). Loss parameters are checked again, in full, by the loss.
RANGES: dict[str, tuple[str, float, float, str]] = {
    "feature_dim": ("[", 1, INF, ")"),
    "hidden_dim": ("[", 1, INF, ")"),
    "projection_dim": ("[", 1, INF, ")"),
    "subset": ("[", 0, INF, ")"),
    "temperature": ("(", 0, INF, ")"),
    "iterations": ("[", 1, INF, ")"),
    "rho": ("(", 0, INF, "]"),  # inf = balanced
    "q": ("(", 0, 1, "]"),
    "lam": ("(", 0, INF, ")"),
    "r1": ("[", 0, INF, ")"),
    "r2": ("[", 0, INF, ")"),
    "alpha": ("[", 0, INF, ")"),
    "beta": ("[", 0, INF, ")"),
    "ema_tau": ("[", 0, 1, "]"),
    "epochs": ("[", 1, INF, ")"),
    "batch_size": ("[", 1, INF, ")"),
    "lr": ("(", 0, MAX_LR, "]"),
    "momentum": ("[", 0, 1, ")"),
    "weight_decay": ("[", 0, 1, "]"),
    "warmup_epochs": ("[", 0, INF, ")"),
    "corrupt_severity": ("[", 0, 5, "]"),
    "corrupt_fraction": ("[", 0, 1, "]"),
    "held_out_domain": ("[", 0, INF, ")"),
    "domain_weight": ("[", 0, INF, ")"),
    "seed": ("[", 0, MAX_SEED, "]"),
    "checkpoint_every": ("[", 0, INF, ")"),
    "eval_labels_per_class": ("[", 0, INF, ")"),
    "eval_draws": ("[", 1, INF, ")"),
    "knn_k": ("[", 1, INF, ")"),
    "wdm_eps": ("(", 0, INF, ")"),
}
NUMERIC_TYPES = ("int", "Optional[int]", "float", "Optional[float]")


def _check_number(name: str, kind: str, value: Any) -> None:
    """Raise ValueError unless ``value`` suits a field of type ``kind`` and lies in ``RANGES[name]`` (finite when the
    field has no entry)."""
    if value is None and kind.startswith("Optional"):
        return
    integral = "int" in kind
    expected = "an integer" if integral else "a number"
    types = (int,) if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, types):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    left, low, high, right = RANGES.get(name, ("(", -INF, INF, ")"))
    above = value > low if left == "(" else value >= low
    below = value < high if right == ")" else value <= high
    if not (above and below):  # NaN fails both
        shown = ", ".join(str(b) if isinstance(b, int) else f"{b:g}" for b in (low, high))
        raise ValueError(f"{name}: expected {expected} in {left}{shown}{right}, got {value!r}")


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build a :class:`Config`; unknown keys raise ValueError (typos should not pass silently)."""
    if not isinstance(values, Mapping):
        raise TypeError(f"values: expected a mapping of settings, got {type(values).__name__}")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"config: unknown setting(s) {unknown}; known: {sorted(FIELDS)}")
    return Config(**{key: _coerce(key, value) for key, value in values.items()})


def load_config(
    path: Optional[Union[str, Path]] = None, overrides: Optional[Mapping[str, Any]] = None
) -> Config:
    """Read a config from a ``.json`` or ``.toml`` file (or start from the defaults when ``path`` is None), then
    apply ``overrides`` (keys whose value is ``None`` are ignored: "not given on the command line").

    A TOML file may put its settings at the top level or under a ``[train]`` table.

    A config file executes code: ``target = "module:function"`` imports that module (running its top-level code)
    and calls the function on every batch, as ``--target`` does. Load only config files you trust.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = read_settings(path)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "solver_options" and isinstance(values.get(key), dict) and isinstance(value, dict):
            value = {**values[key], **value}  # flags add to (and override) the file's options
        values[key] = value
    return config_from_dict(values)


def read_settings(path: Union[str, Path]) -> dict[str, Any]:
    """The raw settings of a JSON or TOML config file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: config file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ValueError(f"path: expected a .json or .toml config file, got {str(path)!r}")
    try:
        values = json.loads(path.read_text()) if suffix == ".json" else _toml_loads(path.read_text())
    except ValueError as error:  # json.JSONDecodeError, tomllib.TOMLDecodeError, bad text encoding
        raise ValueError(f"path: {str(path)!r} is not valid {suffix[1:].upper()}: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"path: {str(path)!r} must hold a table of settings, got {type(values).__name__}")
    if set(values) == {"train"} and isinstance(values["train"], dict):
        values = values["train"]
    return values


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError("reading TOML configs needs Python >= 3.11 or the 'tomli' package") from error
    return tomllib.loads(text)


def _coerce(key: str, value: Any) -> Any:
    """Accept ints for float fields (TOML/JSON write ``1`` for ``1.0``); reject other type mismatches."""
    if value is None:
        return None
    kind = FIELDS[key].type
    if key in ("levels", "weights") and isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)  # TOML / JSON lists and the CLI's comma-separated form agree
    if kind == "dict[str, Any]":
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a table of option names to values, got {value!r}")
        return dict(value)
    if kind in ("float", "Optional[float]") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    checks = {
        "int": int,
        "Optional[int]": int,
        "float": float,
        "Optional[float]": float,
        "str": str,
        "bool": bool,
    }
    expected = checks.get(kind)
    if expected is not None:
        wrong_bool = isinstance(value, bool) and expected is not bool
        if wrong_bool or not isinstance(value, expected):
            raise ValueError(f"{key}: expected {expected.__name__}, got {value!r}")
    return value
