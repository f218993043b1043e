"""The ``otalign`` command (also ``python -m otalign``)::

    otalign train --modality images --dataset digits --method gca_uot --encoder mlp --epochs 40 \\
                  --corrupt-severity 3 --seed 0 --out runs/x
    otalign train --config run.toml --seed 1          # flags override the file
    otalign train --modality timeseries --dataset basicmotions --encoder cnn1d --method gca_uot --epochs 30
    otalign train --modality text --dataset wordnet --encoder tiny_bert --method gca_infonce --epochs 20
    otalign train --modality text --dataset wordnet --encoder minilm_frozen --feature-dim 64 --method gca_infonce
    otalign demo                                       # the method comparison on digits (minutes on a CPU)
    otalign demo --modality timeseries                 # ... on JapaneseVowels; --modality text: WordNet glosses
    otalign demo --quick                               # a smoke run in seconds

Under ``torchrun``, ``otalign train`` trains on several processes (``torchrun --nproc_per_node=2 -m otalign.cli
train ...``).

Errors: a bad argument, config file, checkpoint or device exits with status 2 and one line naming it; a diverged run
exits with status 1; Ctrl-C exits with status 130 (SIGTERM: 143) and says how to resume (``otalign train`` resumes from its last
checkpoint when run again with the same command). Progress goes through ``logging`` (loggers under ``"otalign"``):
unless logging is already configured, the command logs INFO to stderr; when stderr is not a terminal the trainer
writes one line per epoch instead of a progress bar.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

#: Help of every ``otalign train`` flag, by config field (a test checks that each flag has an entry here).
FLAG_HELP = {
    "modality": "data modality: images, timeseries or text",
    "dataset": "images: digits, digits-rotated/-coloured/-noisy, cifar10, ...; timeseries: basicmotions, gunpoint, "
               "japanesevowels, pickupgesture, basicmotions-devices; text: wordnet, fortunes, text_domains",
    "method": "loss preset: infonce, gca_infonce, rince, gca_rince, gca_uot, supcon, ntxent, byol, simsiam",
    "encoder": "images: mlp, cnn or resnet18; timeseries: cnn1d or tcn; text: tiny_bert, minilm (fine-tuned) or "
               "minilm_frozen (frozen MiniLM, trained adapter)",
    "feature_dim": "size of the encoder's output features (what every evaluation reads)",
    "hidden_dim": "hidden width of the MLP encoder and of the projection / predictor heads",
    "projection_dim": "output size of the projection head (what the loss sees)",
    "subset": "train on the first N training samples only (0 = all); for smoke runs",
    "data_root": "folder of downloaded datasets (CIFAR, SVHN, STL-10, image folders); bundled data ignore it",
    "temperature": "entropic strength eps of the OT losses, i.e. the contrastive temperature",
    "iterations": "Sinkhorn iterations T of the GCA losses (gradients unrolled through all of them)",
    "rho": "GCA-UOT's marginal relaxation rho > 0 (larger = closer to the balanced plan)",
    "q": "robustness exponent q in (0, 1] of RINCE, GCA-RINCE and GCA-UOT's robust term",
    "lam": "weight lambda >= 0 of the negatives' term of the robust losses",
    "r1": "GCA-UOT's weight of the KL term",
    "r2": "GCA-UOT's weight of the robust (RINCE) term",
    "ema_tau": "BYOL's base target momentum (rises to 1 along a cosine over training)",
    "epochs": "number of passes over the training set",
    "batch_size": "global batch size, over all processes",
    "lr": "peak learning rate, reached after warmup",
    "optimiser": "sgd, adam, adamw or lars",
    "momentum": "momentum of sgd and lars",
    "weight_decay": "L2 weight decay of the optimiser",
    "warmup_epochs": "epochs of linear warmup before the cosine decay (capped at half of training)",
    "corrupt_severity": "Gaussian-noise severity 1-5 on --corrupt-view (0 = clean)",
    "corrupt_view": "which view --corrupt-severity corrupts: first, second or both",
    "corrupt_fraction": "fraction of the pairs whose --corrupt-view is corrupted (drawn per batch)",
    "seed": "seed of initialisation, batches and augmentations",
    "out": "output folder (metrics.jsonl, checkpoint.pt, results.json, plots)",
    "device": "auto, cpu, cuda, cuda:1, ...",
    "amp": "mixed precision (used on CUDA only)",
    "checkpoint_every": "epochs between checkpoints (0 = only when stopping early)",
    "resume": "continue from OUT/checkpoint.pt when it exists",
    "quiet": "print no progress bars",
    "eval_labels_per_class": "labels per class of the few-label linear probe",
    "eval_draws": "label draws the few-label probe averages over",
    "knn_k": "neighbours of the weighted kNN evaluation",
    "wdm_eps": "entropic strength of the Wasserstein dependency measure (WDM) estimate",
    "solver": "the loss's OT solver: sinkhorn (default), unbalanced (translation-invariant, for finite rho), "
              "proximal (proximal-point multistep: another objective, the GCA divergence at eps / iterations; it warns), "
              "or a name registered with otalign.solvers.register",
    "solver_options": "one option of the solver, KEY=VALUE (repeatable; values read as JSON when they parse: "
                      "--solver-option inner_iter=5)",
    "target": "the batch target plan: pairing (default), labels, domain-prior (--alpha, --beta), hierarchical "
              "(--levels, --weights), or module:function for a callable (labels, domains, n_views) -> (VN, VN); "
              "the module is searched in the current folder, then on PYTHONPATH; importing it runs its code",
    "alpha": "domain prior: weight of same-domain pairs",
    "beta": "domain prior: weight of cross-domain pairs",
    "levels": "hierarchical target: comma-separated levels from instance, label and the dataset's metadata "
              "(domain, coarse)",
    "weights": "hierarchical target: comma-separated weights, one per level",
    "held_out_domain": "train without this domain's samples (leave-one-domain-out); results report its accuracy",
    "domain_alignment": "add a divergence between the batch's domains' features to the loss: sinkhorn, sliced or "
                        "gaussian (needs a dataset with domains)",
    "domain_weight": "weight lambda of --domain-alignment's term (default 1 when it is set)",
}
#: Loss parameters whose ``None`` default means "the method's own value"; any other ``None`` reads "unset".
LOSS_PARAMETERS = ("iterations", "rho", "q", "lam", "r1", "r2")


def build_parser(train_flags: bool = True) -> argparse.ArgumentParser:
    """The command's parser; ``train_flags=False`` leaves ``otalign train``'s flags out, so that ``otalign --help``,
    ``--version`` and ``otalign demo`` parse without importing torch (the flags' defaults come from the training
    settings, which import it)."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="otalign", description="Alignment as optimal transport: training and demo.")
    parser.add_argument("--version", action="version", version=f"otalign {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one model from a config and flags",
                                description=TRAIN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    if train_flags:
        _add_train_flags(train)
    _add_demo(commands)
    return parser


TRAIN_DESCRIPTION = """Train one model from a config file and flags (flags override the file).

A config file is TOML or JSON data, but its target = "module:function" imports that module and runs its
code, as --target does: use config files you trust."""


def _add_train_flags(train: argparse.ArgumentParser) -> None:
    from .training.config import Config, FIELDS

    train.add_argument("--config", type=Path, help="a .toml or .json config file; flags override it "
                                                   "(a target = \"module:function\" in it runs that module's code)")
    defaults = Config()
    helps = {**FLAG_HELP, "dataset": _dataset_help()}
    for name, spec in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        kind = str(spec.type)
        default = getattr(defaults, name)
        shown = default if default is not None else "the method's own" if name in LOSS_PARAMETERS else "unset"
        helptext = f"{helps.get(name, name.replace('_', ' '))} (default: {shown})"
        if name == "solver_options":
            train.add_argument("--solver-option", dest=name, action="append", type=_key_value, default=None,
                               metavar="KEY=VALUE", help=FLAG_HELP[name])
        elif kind == "bool":
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            convert = {"int": int, "Optional[int]": int, "float": float, "Optional[float]": float}.get(kind, str)
            train.add_argument(flag, type=convert, default=None, metavar=name.upper(), help=helptext)
    train.add_argument("--stop-after", type=_at_least_one, default=None, metavar="EPOCH",
                       help="stop (and checkpoint) after this epoch; rerun without it to resume")


def _dataset_help() -> str:
    """``--dataset``'s help: every registered modality's datasets (its first one is the default)."""
    from .training.modality import available_modalities, get_modality

    parts = []
    for name in available_modalities():
        try:
            parts.append(f"{name}: {', '.join(get_modality(name).datasets)}")
        except (ImportError, ValueError) as error:  # a broken plug-in must not break --help
            parts.append(f"{name}: (unavailable: {_one_line(error)})")
    return "dataset of --modality (the first is its default); " + "; ".join(parts)


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="compare methods on real offline data, write report.md")
    demo.add_argument("--modality", choices=("images", "timeseries", "text"), default="images",
                      help="images: scikit-learn's digits (default); timeseries: JapaneseVowels; text: WordNet glosses")
    demo.add_argument("--out", type=Path, default=Path("otalign-demo"), help="output folder of report.md, results.json and the figures (default ./otalign-demo)")
    demo.add_argument("--seeds", type=_at_least_one, default=5, help="seeds per method and condition (default 5)")
    demo.add_argument("--epochs", type=_at_least_one, default=None,
                      help="epochs per run (default 30; 2 with --quick)")
    demo.add_argument("--methods", type=str, default=None,
                      help="comma-separated methods to compare (default images: infonce,gca_infonce,rince,gca_rince,gca_uot,byol; "
                           "timeseries: the same without byol; text: infonce,gca_infonce,gca_uot)")
    demo.add_argument("--quick", action="store_true", help="tiny smoke run: 1 seed, 2 epochs, 400 samples")
    demo.add_argument("--workers", type=_at_least_one, default=None,
                      help="parallel runs (processes of one thread each; default one per CPU core, at most 8)")


#: Errors that mean "the user asked for something that cannot be done": one line and exit status 2.
USER_ERRORS = (ValueError, TypeError, ModuleNotFoundError, OSError)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``otalign`` console script; returns the exit status (see the module docstring for the
    statuses of errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(train_flags="train" in argv)
    args = parser.parse_args(argv)
    restore_logging = _log_to_stderr()
    restore_signal = _terminate_as_interrupt()
    try:
        if args.command == "train":
            return _train(args)
        return _demo(args)
    except KeyboardInterrupt as error:
        status, what = (143, "terminated (SIGTERM)") if isinstance(error, Terminated) else (130, "interrupted")
        parser.exit(status, f"otalign {args.command}: {what}; {_resume_hint(args)}\n")
    except FloatingPointError as error:
        parser.exit(1, f"otalign {args.command}: error: {_one_line(error)}\n")
    except USER_ERRORS as error:
        parser.exit(2, f"otalign {args.command}: error: {_one_line(error)}\n")
    finally:
        restore_signal()
        restore_logging()


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or ``kill``'s stop), raised where the program runs so that it stops as on Ctrl-C."""


def _terminate_as_interrupt() -> Callable[[], None]:
    """Raise :class:`Terminated` on SIGTERM (main thread only); returns the function that restores the handler."""
    def on_sigterm(signum, frame) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def _at_least_one(text: str) -> int:
    """argparse type of the counts (epochs, seeds, workers): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _log_to_stderr() -> Callable[[], None]:
    """Send the ``otalign`` loggers' INFO records to stderr, unless the user configured logging (a handler on the
    root or the ``otalign`` logger). Returns the function that undoes it."""
    package = logging.getLogger("otalign")
    if logging.getLogger().handlers or package.handlers:
        return lambda: None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous = package.level
    package.addHandler(handler)
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)

    def restore() -> None:
        package.removeHandler(handler)
        package.setLevel(previous)

    return restore


def _resume_hint(args: argparse.Namespace) -> str:
    """What to do after Ctrl-C: ``otalign train`` resumes from the output folder's checkpoint by default."""
    if args.command != "train":
        return "the demo does not resume: run it again to start over"
    from .training.trainer import CHECKPOINT

    try:
        config = _config(args)
    except USER_ERRORS:
        return "run the same command again to resume"
    saved = Path(config.out) / CHECKPOINT
    if not config.resume:
        return "resume is off (--no-resume), so the same command starts from scratch"
    if saved.is_file():
        return f"run the same command again to resume from the last checkpoint, {saved}"
    return f"no checkpoint was written yet in {config.out}, so the same command starts from scratch"


def _config(args: argparse.Namespace):
    """The :class:`~otalign.training.config.Config` of ``otalign train``: the config file, then the flags."""
    from .training.config import FIELDS, load_config
    from .training.modality import with_defaults

    overrides = {name: getattr(args, name) for name in FIELDS}
    if overrides["solver_options"] is not None:
        overrides["solver_options"] = dict(overrides["solver_options"])
    return with_defaults(load_config(args.config, overrides))


def _train(args: argparse.Namespace) -> int:
    from .training.ddp import is_main_process, teardown
    from .training.experiment import run_experiment

    config = _config(args)
    _check_out(Path(config.out))
    try:
        result = run_experiment(config, stop_after=args.stop_after)
    finally:
        teardown()
    if not is_main_process():
        return 0
    evaluation = result.get("evaluation")
    if evaluation is not None:
        print(json.dumps({"out": config.out, **evaluation}, indent=2))
    elif args.stop_after is not None:
        print(f"stopped after epoch {args.stop_after}; resume with the same command without --stop-after")
    return 0


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)``, the value read as JSON when it parses (numbers, true/false), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _demo(args: argparse.Namespace) -> int:
    from .training.demo import DEMOS, run_count, run_demo, short_table
    from .training.methods import get_method

    default = DEMOS[args.modality].methods
    methods = default if args.methods is None else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods:
        raise ValueError("--methods: expected at least one method name")
    for method in methods:
        get_method(method)
    _check_out(args.out)
    results = run_demo(args.out, seeds=args.seeds, epochs=args.epochs, methods=methods, quick=args.quick,
                       workers=args.workers, modality=args.modality)
    runs = run_count(len(results["results"]), len(methods), results["seeds"])
    print()
    print(short_table(results))
    print(f"\n{runs} in {results['seconds']:.0f} s. Report: {(args.out / 'report.md').resolve()}")
    return 0


def _check_out(out: Path) -> None:
    """The output folder must be a folder, or creatable: no file in the way at it or above it."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            where = "" if path == out else f" (at {str(path)!r})"
            raise ValueError(f"out: {str(out)!r} cannot be an output folder: a file is in the way{where}")


if __name__ == "__main__":
    sys.exit(main())
