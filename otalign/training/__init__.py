"""Training and evaluation of self-supervised models (plain PyTorch; works under ``torchrun``).

* :class:`Config` / :func:`load_config`: one run's settings, from a JSON/TOML file and flags.
* :func:`build_model` and the method registry (:data:`METHODS`, :func:`register_method`): the GCA losses of
  :mod:`otalign.losses`, and BYOL / SimSiam (:class:`BYOL`, :class:`SimSiam`).
* :class:`Trainer`: optimiser, warmup + cosine schedule, AMP on CUDA, progress bars, JSON-lines metrics, atomic
  checkpoints and exact resume.
* :func:`evaluate`: linear probes (full and few-label), kNN, alignment, uniformity, WDM on frozen features.
* :func:`run_experiment`: all of the above from a config; :func:`run_demo`: the method comparison on digits, time
  series (JapaneseVowels) or text (WordNet glosses).
* :mod:`.modality`: the registry (:func:`register_modality`, :func:`get_modality`) through which the trainer finds
  a modality's data, views (:class:`PairViews`) and networks; the modalities (``otalign.modalities.images``,
  ``timeseries``, ``text``, or a third-party package) register themselves and the core imports none of them.
* :mod:`.target_rules`: the batch target plans a config can ask for (pairing, labels, domain prior, hierarchical,
  a custom ``module:function``); :mod:`.fingerprint`: what a checkpoint must match to be resumed.
* :mod:`.setups`: training with targets built from side information (domain priors, label hierarchies) and
  leave-one-domain-out evaluation.

Example::

    >>> from otalign.training import Config, run_experiment
    >>> result = run_experiment(Config(method="gca_uot", epochs=40, corrupt_severity=5, out="runs/uot"))
"""

from .byol import BYOL
from .config import Config, load_config
from .data import TensorData, build_networks, load_data
from .modality import Modality, available_modalities, get_modality, register_modality
from .demo import run_demo
from .evaluate import evaluate
from .experiment import run_experiment
from .methods import METHODS, Method, build_model, get_method, register_method
from .models import ContrastiveModel, SSLModel
from .simsiam import SimSiam
from .target_rules import TargetRule
from .trainer import Trainer
from .views import PairViews

__all__ = [
    "BYOL",
    "METHODS",
    "Config",
    "ContrastiveModel",
    "Method",
    "Modality",
    "PairViews",
    "SSLModel",
    "SimSiam",
    "TargetRule",
    "TensorData",
    "Trainer",
    "available_modalities",
    "build_model",
    "build_networks",
    "evaluate",
    "get_method",
    "get_modality",
    "load_config",
    "load_data",
    "register_method",
    "register_modality",
    "run_demo",
    "run_experiment",
]
