"""Training and evaluation of self-supervised models (plain PyTorch; works under ``torchrun``).

* :class:`Config` / :func:`load_config`: one run's settings, from a JSON/TOML file and flags.
* :func:`build_model` and the method registry (:data:`METHODS`, :func:`register_method`): the GCA losses of
  :mod:`otalign.losses`, and BYOL / SimSiam (:class:`BYOL`, :class:`SimSiam`).
* :class:`Trainer`: optimiser, warmup + cosine schedule, AMP on CUDA, progress bars, JSON-lines metrics, atomic
  checkpoints and exact resume.
* :func:`evaluate`: linear probes (full and few-label), kNN, alignment, uniformity, WDM on frozen features.
* :func:`run_experiment`: all of the above from a config; :func:`run_demo`: the method comparison on digits, time
  series (JapaneseVowels) or text (WordNet glosses).
* modalities (looked up by name, imported on use): ``images`` (:mod:`.images`), ``timeseries``
  (:mod:`.timeseries`), ``text`` (:mod:`.text`).
* :mod:`.setups`: training with targets built from side information (domain priors, label hierarchies) and
  leave-one-domain-out evaluation.

Example::

    >>> from otalign.training import Config, run_experiment
    >>> result = run_experiment(Config(method="gca_uot", epochs=40, corrupt_severity=5, out="runs/uot"))
"""

from .byol import BYOL
from .config import Config, load_config
from .data import TensorData, build_networks, load_data
from .demo import run_demo
from .evaluate import evaluate
from .experiment import run_experiment
from .methods import METHODS, Method, build_model, get_method, register_method
from .models import ContrastiveModel, SSLModel
from .simsiam import SimSiam
from .trainer import Trainer

__all__ = [
    "BYOL",
    "METHODS",
    "Config",
    "ContrastiveModel",
    "Method",
    "SSLModel",
    "SimSiam",
    "TensorData",
    "Trainer",
    "build_model",
    "build_networks",
    "evaluate",
    "get_method",
    "load_config",
    "load_data",
    "register_method",
    "run_demo",
    "run_experiment",
]
