"""A cross-domain experiment: digits in four domains, a domain-aware target, and leave-one-domain-out probing.

``targets.domain_prior(domains, alpha, beta)`` adds ``alpha`` to every same-domain pair and ``beta`` to every
cross-domain pair of the target plan. ``alpha > beta`` asks the features to keep the domain (useful when the domain
matters downstream); ``beta > alpha`` asks them to forget it (domain invariance). We train GCA-INCE with both and
with neither, then (1) probe domain and class on frozen features, (2) train on three domains without labels, fit a
class probe on them and test it on the fourth, held-out domain.

Run: ``python examples/cross_domain.py`` (under a minute on a CPU).
"""

from __future__ import annotations

import torch

from otalign.modalities import images
from otalign.training import setups
from otalign.training.config import Config
from otalign.modalities.images.training import ImageViews

PER_DOMAIN = 200


def main() -> None:
    torch.set_num_threads(1)
    x, y, domains = images.digits_domains(("clean", "rotated", "coloured", "noisy"), seed=0)
    keep = torch.cat([torch.nonzero(domains == d).flatten()[:PER_DOMAIN] for d in range(4)])
    x, y, domains = x[keep], y[keep], domains[keep]
    views = ImageViews(images.digits_transform())
    config = Config(modality="images", dataset="digits", encoder="mlp", method="gca_infonce", epochs=10,
                    feature_dim=64, hidden_dim=128, projection_dim=32, batch_size=200, device="cpu", amp=False,
                    checkpoint_every=0, resume=False, quiet=True, out="runs/cross_domain")
    for alpha, beta in ((0.0, 0.0), (0.05, 0.0), (0.0, 0.05)):
        run = config.replace(out=f"runs/cross_domain/alpha{alpha}-beta{beta}")  # a run refuses another run's folder
        encoder = setups.train_with_target(run, x, views, setups.domain_target(domains, alpha, beta))
        features = setups.features_of(encoder, x)
        print(f"alpha {alpha:<4} beta {beta:<4}: domain probe {setups.probe(features, domains):.3f}, "
              f"class probe {setups.probe(features, y):.3f}")
    lodo = config.replace(epochs=5, out="runs/cross_domain/lodo")
    held_out = setups.leave_one_domain_out_run(lodo, x, y, domains, views, alpha=0.0, beta=0.05)
    names = images.DIGITS_DOMAINS
    print("leave one domain out (beta 0.05), class accuracy on the held-out domain: "
          + ", ".join(f"{names[d]} {accuracy:.3f}" for d, accuracy in held_out.items()))


if __name__ == "__main__":
    main()
