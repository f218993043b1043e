"""The modality registry: registration, defaults that follow the modality, and a core that imports no modality."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from otalign.training import Config, Modality, PairViews, TensorData, get_modality, register_modality
from otalign.training.data import build_networks, load_data
from otalign.training.modality import available_modalities, with_defaults


class NoisyViews(PairViews):
    def augment(self, x, generator):
        return x + 0.1 * torch.randn(x.shape, generator=generator), x - 0.1 * torch.randn(x.shape, generator=generator)


def load_toy(config, device):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=gen), torch.arange(40) % 2
    return TensorData(x[:30], y[:30], x[30:], y[30:], NoisyViews(), (3,), train_meta={"domain": torch.arange(30) % 3},
                      test_meta={"domain": torch.arange(10) % 3})


def toy_networks(config, in_shape):
    encoder = nn.Linear(in_shape[0], config.feature_dim)
    encoder.feature_dim = config.feature_dim
    return encoder, nn.Linear(config.feature_dim, config.projection_dim)


TOY = Modality("toy_vectors", load_toy, toy_networks, ("toy", "toy-big"), ("linear",), "test vectors")


def test_a_registered_modality_serves_the_trainer():
    register_modality(TOY)
    assert get_modality("toy_vectors") is TOY and "toy_vectors" in available_modalities()
    config = Config(modality="toy_vectors", feature_dim=4, projection_dim=2)
    assert (config.dataset, config.encoder) == (None, None)  # a settings object discovers no plug-in
    assert (with_defaults(config).dataset, with_defaults(config).encoder) == ("toy", "linear")  # the modality's
    data = load_data(config, torch.device("cpu"))
    encoder, projector = build_networks(config, data.in_shape)
    assert projector(encoder(data.train_x)).shape == (30, 2)
    x0, x1 = data.views(data.train_x, torch.Generator().manual_seed(1))
    assert x0.shape == x1.shape == (30, 3) and not torch.equal(x0, x1)


def test_registration_conflicts_and_unknown_names_are_errors():
    register_modality(TOY)
    with pytest.raises(ValueError, match="already registered"):
        register_modality(Modality("toy_vectors", load_toy, toy_networks, ("other",), ("linear",)))
    with pytest.raises(ValueError, match="modality: unknown 'nope'"):
        with_defaults(Config(modality="nope"))
    with pytest.raises(ValueError, match="datasets"):
        Modality("bad", load_toy, toy_networks, (), ("linear",))


@pytest.mark.parametrize("modality, dataset, encoder", [("images", "digits", "mlp"),
                                                         ("timeseries", "basicmotions", "cnn1d"),
                                                         ("text", "wordnet", "tiny_bert")])
def test_shipped_modalities_register_with_their_defaults(modality, dataset, encoder):
    config = with_defaults(Config(modality=modality))
    assert (config.dataset, config.encoder) == (dataset, encoder)


def test_the_core_imports_no_modality():
    """Importing otalign, its losses, solvers and trainer, and building a config, leaves otalign.modalities alone
    until a modality is asked for by name."""
    code = ("import sys, otalign, otalign.solvers, otalign.losses, otalign.training, otalign.cli; "
            "from otalign.training import Config, Trainer, run_experiment; "
            "assert not [m for m in sys.modules if m.startswith('otalign.modalities')], sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_pair_views_validate_and_corrupt_the_chosen_view():
    with pytest.raises(ValueError, match="view: expected"):
        NoisyViews(view="third")
    with pytest.raises(ValueError, match="fraction"):
        NoisyViews(fraction=1.5)

    class Marked(NoisyViews):
        corrupts = True

        def corrupt(self, batch, generator):
            return batch + 100.0

    x = torch.zeros(4, 3)
    first, second = Marked(view="first")(x, torch.Generator().manual_seed(0))
    assert first.min() > 50 and second.max() < 50
    both = Marked(view="both")(x, torch.Generator().manual_seed(0))
    assert all(v.min() > 50 for v in both)
