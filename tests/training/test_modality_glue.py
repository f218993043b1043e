"""The time-series and text modalities through the trainer and the CLI (tiny settings, seconds each)."""

import json
from pathlib import Path

import pytest
import torch

from otalign.cli import main
from otalign.training.data import stratified_split

WORDNET = Path("/usr/share/wordnet/data.noun")
TINY = ["--epochs", "1", "--hidden-dim", "32", "--feature-dim", "16", "--projection-dim", "8", "--iterations", "3",
        "--device", "cpu", "--quiet", "--eval-draws", "1"]
EVALUATION = {"probe_full", "probe_few", "knn", "alignment", "uniformity", "wdm"}


def needs_aeon():
    pytest.importorskip("aeon")


def needs_text():
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    if not WORDNET.is_file():
        pytest.skip("Debian wordnet-base is not installed")


def test_stratified_split_puts_a_quarter_of_every_class_in_test():
    labels = torch.tensor([0] * 8 + [1] * 4 + [2] * 7)
    train, test = stratified_split(labels, 0.25, seed=3)
    assert sorted(torch.cat([train, test]).tolist()) == list(range(labels.numel()))
    for value, count in ((0, 8), (1, 4), (2, 7)):
        assert int((labels[test] == value).sum()) == round(0.25 * count)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(labels, 1.0)


@pytest.mark.parametrize("encoder", ["cnn1d", "tcn"])
def test_train_timeseries_through_the_cli(tmp_path, capsys, encoder):
    needs_aeon()
    out = tmp_path / encoder
    assert main(["train", "--modality", "timeseries", "--dataset", "basicmotions", "--encoder", encoder,
                 "--method", "gca_uot", "--batch-size", "16", "--out", str(out), *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"out"} | EVALUATION
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["modality"] == "timeseries" and len(results["history"]) == 1


def test_timeseries_noise_corrupts_exactly_the_asked_fraction_of_the_second_view():
    from otalign.modalities.timeseries import sensor_transform
    from otalign.modalities.timeseries.training import SeriesViews

    x = torch.randn(10, 3, 40)
    clean = SeriesViews(sensor_transform())(x, torch.Generator().manual_seed(0))
    noisy = SeriesViews(sensor_transform(), noise_std=1.0, view="second", fraction=0.5)(
        x, torch.Generator().manual_seed(0))
    assert torch.equal(clean[0], noisy[0])  # the first view is untouched
    changed = (clean[1] - noisy[1]).abs().flatten(1).amax(1) > 0
    assert int(changed.sum()) == 5


def test_unknown_timeseries_dataset_and_encoder_are_named(tmp_path, capsys):
    needs_aeon()
    for flag, value in (("--dataset", "nope"), ("--encoder", "mlp")):
        args = ["train", "--modality", "timeseries", "--dataset", "basicmotions", "--encoder", "cnn1d",
                "--out", str(tmp_path), *TINY, flag, value]
        with pytest.raises(SystemExit):
            main(args)
        assert flag.strip("-") in capsys.readouterr().err


def test_train_text_through_the_cli(tmp_path, capsys):
    needs_text()
    out = tmp_path / "text"
    assert main(["train", "--modality", "text", "--dataset", "wordnet", "--encoder", "tiny_bert", "--method",
                 "gca_infonce", "--subset", "64", "--eval-labels-per-class", "2", "--batch-size", "32",
                 "--out", str(out), *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"out"} | EVALUATION
    history = json.loads((out / "results.json").read_text())["history"]
    assert len(history) == 1 and history[0]["loss"] > 0


def test_token_encoder_gives_the_text_encoders_features():
    needs_text()
    from otalign.modalities.text import tiny_bert
    from otalign.modalities.text.training import TokenEncoder, TokenViews

    texts = ["a small dog barks", "the market fell sharply today", "rain"]
    words = sorted({w for t in texts for w in t.split()})
    encoder = tiny_bert(seed=0, vocabulary=words, hidden_size=16, intermediate_size=32, max_length=32).eval()
    views = TokenViews(texts, encoder.tokenizer)
    tokens = views.inputs(torch.arange(3))
    assert tokens.shape == (3, 2, 32)
    with torch.no_grad():
        torch.testing.assert_close(TokenEncoder(encoder)(tokens), encoder(texts))
        x0, x1 = views(torch.arange(3), torch.Generator().manual_seed(0))
    assert x0.shape == x1.shape == (3, 2, 32)
    assert bool((x0[:, 1].sum(1) <= tokens[:, 1].sum(1)).all())  # deletion never adds tokens


@pytest.mark.parametrize("modality", ["timeseries", "text"])
def test_demo_quick(tmp_path, capsys, modality):
    needs_aeon() if modality == "timeseries" else needs_text()
    out = tmp_path / modality
    assert main(["demo", "--modality", modality, "--quick", "--methods", "gca_uot", "--out", str(out),
                 "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "GCAUOT" in printed and "report.md" in printed
    report = (out / "report.md").read_text()
    assert ("JapaneseVowels" if modality == "timeseries" else "WordNet") in report
    results = json.loads((out / "results.json").read_text())
    assert results["modality"] == modality
    assert set(results["results"]["clean"]) == {"untrained", "gca_uot"}
