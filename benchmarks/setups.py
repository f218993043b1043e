"""Domain-prior and hierarchical-target setups (otalign.training.setups); writes benchmarks/results/setups.md.

    python benchmarks/setups.py            # about 10 minutes on a shared 2-core CPU
    python benchmarks/setups.py --quick    # a smoke run (tiny data, 1 epoch)
    python benchmarks/setups.py --only domain-alignment --seeds 5 --epochs 10   # (c) alone, its own results file
    python benchmarks/setups.py --only domain-alignment --seeds 3 --epochs 10 --held-out-domain 1 \
        --out benchmarks/results/domain_alignment_lodo.md                        # (c), leave-one-domain-out

(a) Domain shift: GCA-INCE with target ``domain_prior(domains, alpha, beta)``, sweeping ``alpha - beta``; linear
probes on frozen encoder features predict the domain and the class (stratified 75/25 split of all samples), on
digits in 4 domains (clean, rotated, coloured, noisy; 300 images per domain) and on BasicMotions recorded by 4
synthetic devices (all 80 recordings, each replicated on every device: 320 series). Leave-one-domain-out on digits:
train on three domains, probe on the fourth.
(b) Hierarchical contrast: ``hierarchical([instance, fine, coarse], weights)`` vs flat targets, fine and coarse
probe accuracy, on digits (fine = digit, coarse = stroke shape: {0, 6, 8, 9} closed loops, {1, 4, 7} straight
strokes, {2, 3, 5} open curves) and on WordNet noun definitions (fine = depth-3 hypernym ancestor, coarse = the 26
lexicographer files; tiny BERT from scratch).
(c) Domain-alignment term (``--domain-alignment sinkhorn --domain-weight LAMBDA``): InfoNCE with and without the
term on ``digits-domains`` and ``basicmotions-devices``, held-out-domain accuracy (a class probe trained on the other
domains' features, tested on each domain in turn, averaged; the encoder sees every domain without labels), mean and
standard error over seeds. Written to ``benchmarks/results/domain_alignment.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402

from otalign.training import setups  # noqa: E402
from otalign.training.config import Config  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "setups.md"
ALIGNMENT_RESULTS = RESULTS.parent / "domain_alignment.md"
#: (row label, modality, dataset, encoder, batch size, epochs per --epochs) of the domain-alignment rows: the
#: sensor set is small (an epoch is a few batches), so it gets three times the epochs.
ALIGNMENT_ROWS = (("digits-domains", "images", "digits-domains", "mlp", 256, 1),
                  ("BasicMotions devices", "timeseries", "basicmotions-devices", "cnn1d", 128, 3))
DIGIT_COARSE = torch.tensor([0, 1, 2, 2, 1, 2, 0, 1, 0, 0])  # digit -> 0 loops, 1 straight, 2 open curves
FEW = 2  # labels per class of the few-label probes (the full probes saturate on BasicMotions)
SWEEP = ((0.0, 0.02), (0.0, 0.0), (0.005, 0.0), (0.02, 0.0), (0.1, 0.0))  # (alpha, beta)


def base_config(modality: str, dataset: str, encoder: str, epochs: int, seed: int, batch_size: int = 256) -> Config:
    return Config(modality=modality, dataset=dataset, encoder=encoder, method="gca_infonce", feature_dim=64,
                  hidden_dim=128, projection_dim=32, epochs=epochs, batch_size=batch_size, lr=2e-3, warmup_epochs=1,
                  temperature=0.5, seed=seed, device="cpu", amp=False, checkpoint_every=0, resume=False, quiet=True,
                  out=fresh_folder())


def fresh_folder() -> str:
    """A new output folder: runs never share one (a folder holds one run's files)."""
    return tempfile.mkdtemp(prefix="otalign-setups-")


def digits_domain_data(per_domain: int):
    from otalign.modalities import images
    from otalign.modalities.images.training import ImageViews

    x, y, d = images.digits_domains(images.DIGITS_DOMAINS, seed=0)
    keep = torch.cat([torch.nonzero(d == k).flatten()[torch.randperm(int((d == k).sum()),
                      generator=torch.Generator().manual_seed(k))[:per_domain]] for k in torch.unique(d).tolist()])
    return x[keep], y[keep], d[keep], ImageViews(images.digits_transform())


def motion_domain_data():
    from otalign.modalities import timeseries as ts
    from otalign.modalities.timeseries.training import SeriesViews

    data = ts.load_aeon_dataset("BasicMotions", "all")
    x, _, _ = ts.standardize(data.X)
    x, y, d = ts.device_shift_domains(x, data.y, 4, seed=0, replicate=True)
    return x.float(), y, d, SeriesViews(ts.sensor_transform())


def mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def domain_sweep(name: str, data, config_of: Callable[[int], Config], seeds: int) -> list[str]:
    x, y, d, views = data
    lines = [f"### {name}: {x.shape[0]} samples, {int(d.max()) + 1} domains, {int(y.max()) + 1} classes", "",
             "| alpha | beta | alpha - beta | domain probe ↑ | class probe ↑ | domain probe, 2 labels/domain ↑ "
             "| class probe, 2 labels/class ↑ |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for alpha, beta in SWEEP:
        scores: list[list[float]] = [[], [], [], []]
        for seed in range(seeds):
            encoder = setups.train_with_target(config_of(seed), x, views, setups.domain_target(d, alpha, beta))
            f = setups.features_of(encoder, x)
            for column, (labels, few) in enumerate(((d, None), (y, None), (d, FEW), (y, FEW))):
                scores[column].append(setups.probe(f, labels, seed=seed, labels_per_class=few))
        lines.append(f"| {alpha:g} | {beta:g} | {alpha - beta:+g} | " + " | ".join(map(mean_std, scores)) + " |")
        print(lines[-1], flush=True)
    return lines + [""]


def lodo_table(data, config: Config, pairs: Sequence[tuple[float, float]]) -> list[str]:
    from otalign.modalities.images import DIGITS_DOMAINS

    x, y, d, views = data
    names = [DIGITS_DOMAINS[k] for k in torch.unique(d).tolist()]
    lines = ["| alpha | beta | " + " | ".join(f"held out: {n}" for n in names) + " | mean |",
             "|---:|---:|" + "---:|" * (len(names) + 1)]
    for alpha, beta in pairs:
        fresh = config.replace(out=fresh_folder())  # each (alpha, beta) its own fold folders
        accs = setups.leave_one_domain_out_run(fresh, x, y, d, views, alpha, beta)
        values = [accs[k] for k in sorted(accs)]
        lines.append(f"| {alpha:g} | {beta:g} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {statistics.mean(values):.3f} |")
        print(lines[-1], flush=True)
    return lines + [""]


def hierarchy_table(x, fine, coarse, views, config_of: Callable[[int], Config], seeds: int, weights,
                    in_shape: Optional[tuple] = None, inputs=None, few_label: bool = True) -> list[str]:
    instance = torch.arange(x.shape[0])
    w_fine, w_coarse = weights
    variants = {
        "instance only (SSL)": ([instance], [1.0]),
        f"flat fine: instance + {w_fine:g} fine": ([instance, fine], [1.0, w_fine]),
        f"flat coarse: instance + {w_coarse:g} coarse": ([instance, coarse], [1.0, w_coarse]),
        f"hierarchical: instance + {w_fine:g} fine + {w_coarse:g} coarse": ([instance, fine, coarse],
                                                                             [1.0, w_fine, w_coarse]),
    }
    lines = ["| target | fine probe ↑ | fine probe, 5 labels/class ↑ | coarse probe ↑ |", "|---|---:|---:|---:|"]
    for label, (levels, weights_) in variants.items():
        full, few, crs = [], [], []
        for seed in range(seeds):
            encoder = setups.train_with_target(config_of(seed), x, views, setups.hierarchical_target(levels, weights_),
                                               in_shape, inputs)
            f = setups.features_of(encoder, x, inputs)
            full.append(setups.probe(f, fine, seed=seed))
            if few_label:
                few.append(setups.probe(f, fine, seed=seed, labels_per_class=5))
            crs.append(setups.probe(f, coarse, seed=seed))
        lines.append(f"| {label} | {mean_std(full)} | {mean_std(few) if few else '–'} | {mean_std(crs)} |")
        print(lines[-1], flush=True)
    return lines + [""]


def mean_se(values: Sequence[float]) -> str:
    """``mean ± standard error`` (the mean alone for one value)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) / len(values) ** 0.5:.3f}"


def alignment_section(seeds: int, epochs: int, weight: float, quick: bool,
                      progress: Callable[[list[str]], None] = lambda lines: None,
                      held_out: Optional[int] = None) -> list[str]:
    """(c): held-out-domain accuracy with and without the domain-alignment term, one table row per dataset and
    condition; ``progress(lines)`` is called after each row (the results file then holds every finished row).
    With ``held_out = d`` the encoder never sees domain ``d`` (leave-one-domain-out) and the held-out column is
    the accuracy on ``d`` alone."""
    from otalign.training.data import load_data
    from otalign.training.experiment import run_experiment

    lines = [f"InfoNCE (temperature 0.5), Adam lr 2e-3, {epochs} epochs (BasicMotions: {3 * epochs}), "
             f"{seeds} seed(s) per cell; term: "
             f"`--domain-alignment sinkhorn --domain-weight {weight:g}` (Sinkhorn divergence, blur 0.1, between the "
             "unit-normalised encoder features of each pair of domains in a batch). held-out domain = class probe "
             "trained on the other domains' features, tested on each domain, averaged; domain probe = how well "
             "the features predict the domain (lower = more aligned). Mean ± standard error over seeds.", "",
             "| dataset | domain term | held-out-domain accuracy ↑ | in-domain accuracy ↑ | domain probe | "
             "term at the last epoch | seeds |", "|---|---|---:|---:|---:|---:|---:|"]
    for label, modality, dataset, encoder, batch, factor in ALIGNMENT_ROWS:
        base = Config(modality=modality, dataset=dataset, encoder=encoder, method="infonce", feature_dim=64,
                      hidden_dim=128, projection_dim=32, epochs=epochs * factor, batch_size=batch, lr=2e-3,
                      warmup_epochs=1,
                      temperature=0.5, device="cpu", amp=False, checkpoint_every=0, resume=False, quiet=True,
                      subset=200 if quick else 0, held_out_domain=held_out, out=fresh_folder())
        data = load_data(base, torch.device("cpu"))
        for term in (None, "sinkhorn"):
            scores: list[list[float]] = [[], [], [], []]
            for seed in range(seeds):
                config = base.replace(seed=seed, out=fresh_folder(), domain_alignment=term,
                                      domain_weight=weight if term else None)
                result = run_experiment(config, data, plots=False)
                evaluation = result["evaluation"]
                first = "held_out_domain" if held_out is None else f"held_out_domain/{held_out}"
                for column, key in enumerate((first, "in_domain", "domain_probe")):
                    scores[column].append(evaluation[key])
                scores[3].append(result["history"][-1].get("domain_alignment", float("nan")))
            term_text = "–" if term is None else f"sinkhorn, λ = {weight:g}"
            last = "–" if term is None else mean_se(scores[3])
            lines.append(f"| {label} | {term_text} | {mean_se(scores[0])} | {mean_se(scores[1])} | "
                         f"{mean_se(scores[2])} | {last} | {seeds} |")
            print(lines[-1], flush=True)
            progress(lines)
    return lines + [""]


def alignment_main(args) -> int:
    start = time.perf_counter()
    epochs = 1 if args.quick else args.epochs
    seeds = 1 if args.quick else args.seeds
    lines = ["# Domain-alignment term: held-out-domain accuracy with and without it", "",
             f"Measured on {machine()} (one torch thread); `python benchmarks/setups.py --only domain-alignment "
             f"--seeds {seeds} --epochs {epochs} --weight {args.weight:g}"
             + ("" if args.held_out_domain is None else f" --held-out-domain {args.held_out_domain}") + "`"
             + (" --quick (SMOKE RUN: numbers are not meaningful)" if args.quick else "") + ".", ""]
    out = ALIGNMENT_RESULTS if args.out == RESULTS else args.out
    out.parent.mkdir(parents=True, exist_ok=True)

    def progress(rows: list[str]) -> None:
        out.write_text("\n".join(lines + rows + ["", "(run in progress: the rows above are finished)", ""]))

    if args.held_out_domain is not None:
        lines += [f"Leave one domain out: the encoder is trained without domain {args.held_out_domain}; the "
                  f"held-out column is the class accuracy on that domain alone.", ""]
    lines += alignment_section(seeds, epochs, args.weight, args.quick, progress, args.held_out_domain)
    seconds = time.perf_counter() - start
    lines += [f"Total wall time: {seconds:.0f} s.", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out} in {seconds:.0f} s")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, 1 epoch, 1 seed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", choices=("domain-alignment",), default=None,
                        help="run one section alone (written to its own results file)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per cell of --only domain-alignment")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run of --only domain-alignment")
    parser.add_argument("--weight", type=float, default=1.0, help="domain weight lambda of --only domain-alignment")
    parser.add_argument("--held-out-domain", type=int, default=None,
                        help="--only domain-alignment: leave this domain out of training")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.only == "domain-alignment":
        return alignment_main(args)
    quick = args.quick
    seeds = 1 if quick else 2
    start = time.perf_counter()
    lines = ["# Setups: domain priors and hierarchical targets", "",
             f"Measured on {machine()} (one torch thread); `python benchmarks/setups.py`"
             + (" --quick (SMOKE RUN: numbers are not meaningful)" if quick else "") + ".", "",
             "All runs: GCA-INCE (temperature 0.5, default Sinkhorn iterations) with the stated target, Adam lr 2e-3, "
             "warmup then cosine; probes are logistic regressions on frozen encoder features, trained on a "
             "stratified 75 % of the samples (all of their labels, or 2 per class, mean of 5 draws) and tested on "
             "the other 25 % (the same samples the encoder saw, without labels). "
             f"Mean ± std over {seeds} seed(s); small epochs to keep the whole script near 10 minutes on a CPU.", "", "## (a) Domain shift: `targets.domain_prior(domains, alpha, beta)`", ""]

    digits = digits_domain_data(60 if quick else 300)
    e_dig = 1 if quick else 15
    lines += [f"MLP encoder (64-d features), {e_dig} epochs, batch 256.", ""]
    lines += domain_sweep("digits in 4 domains", digits,
                          lambda s: base_config("images", "digits", "mlp", e_dig, s), seeds)
    motions = motion_domain_data()
    e_mot = 1 if quick else 40
    lines += [f"1-D CNN encoder (width 32, 64-d features), {e_mot} epochs, batch 128.", ""]
    lines += domain_sweep("BasicMotions, 4 synthetic devices", motions,
                          lambda s: base_config("timeseries", "basicmotions", "cnn1d", e_mot, s, 128), seeds)
    lines += ["### Leave one domain out (digits): train the encoder on three domains without labels, fit the class "
              "probe on them, test it on the held-out domain", ""]
    lines += lodo_table(digits, base_config("images", "digits", "mlp", e_dig, 0), ((0.0, 0.0), (0.0, 0.02),
                                                                                   (0.02, 0.0)))

    lines += ["## (b) Hierarchical contrast: `targets.hierarchical([instance, fine, coarse], weights)`", ""]
    from otalign.modalities import images

    x, y, _ = images.load_digits_dataset("clean", seed=0)
    if quick:
        x, y = x[:200], y[:200]
    from otalign.modalities.images.training import ImageViews

    lines += [f"### digits: {x.shape[0]} images, fine = 10 digits, coarse = 3 stroke groups "
              "({0,6,8,9} loops, {1,4,7} straight, {2,3,5} open curves); MLP, "
              f"{e_dig} epochs", ""]
    lines += hierarchy_table(x, y, DIGIT_COARSE[y], ImageViews(images.digits_transform()),
                             lambda s: base_config("images", "digits", "mlp", e_dig, s), seeds, (0.02, 0.005))
    lines += wordnet_section(quick)
    seconds = time.perf_counter() - start
    lines += [f"Total wall time: {seconds:.0f} s.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} in {seconds:.0f} s")
    return 0


def wordnet_section(quick: bool) -> list[str]:
    from otalign.modalities import text as adapter
    from otalign.modalities.text import training as text

    texts, lexfiles, _ = text.corpus("wordnet")
    nouns = adapter.load_wordnet_nouns(depth=4, per_lexfile=text.PER_CLASS, seed=0)
    fine, _ = adapter.ancestor_labels(nouns.paths, 3)
    index = torch.arange(len(texts))
    views = text.TokenViews(texts, text.tokenizer("wordnet", "tiny_bert"))
    epochs = 1 if quick else 8
    if quick:
        index, fine, lexfiles = index[:128], fine[:128], lexfiles[:128]
    config = base_config("text", "wordnet", "tiny_bert", epochs, 0)
    return [f"### WordNet: {index.numel()} noun definitions, fine = depth-3 hypernym ancestor "
            f"({int(torch.unique(fine).numel())} classes), coarse = lexicographer file "
            f"({int(torch.unique(lexfiles).numel())} classes); tiny BERT (width 64) from scratch, {epochs} epochs, "
            "1 seed", ""] + hierarchy_table(index, fine, lexfiles, views, lambda s: config.replace(seed=s, out=fresh_folder()), 1,
                                            (0.02, 0.005), (2, text.MAX_LENGTH), views.inputs, few_label=False)


if __name__ == "__main__":
    sys.exit(main())
