"""A custom target plan from domain knowledge: digits that look alike should sit near each other.

The contrastive loss is a divergence between the model's plan and a target plan ``P_tgt`` (any non-negative
``(2B, 2B)`` matrix with a zero diagonal). Here the target says: the two views of a digit image are a positive pair
(weight 1), and so, with a small weight, are two images of *visually similar* digits (1-7, 3-8, 4-9, 5-6, 0-6 and
each digit with itself). Only the similarity table of the 10 digits is supervision; no per-image label is ever
compared with another digit's. We train GCA-INCE with that target and with the plain pairing target and compare
linear-probe accuracy and how often a digit's nearest class centroid is one of its "similar" digits.

Run: ``python examples/custom_target.py`` (under a minute on a CPU).
"""

from __future__ import annotations

import torch

from otalign.modalities import images
from otalign.training import setups
from otalign.training.target_rules import TargetRule
from otalign.training.config import Config
from otalign.modalities.images.training import ImageViews

SIMILAR_PAIRS = ((1, 7), (3, 8), (4, 9), (5, 6), (0, 6))


def similarity_table(weight: float) -> torch.Tensor:
    """``S (10, 10)``: ``weight`` for the same digit, ``weight / 2`` for a similar pair, 0 otherwise."""
    S = torch.eye(10) * weight
    for a, b in SIMILAR_PAIRS:
        S[a, b] = S[b, a] = weight / 2
    return S


def similarity_rule(labels: torch.Tensor, S: torch.Tensor) -> TargetRule:
    """The batch target: instance pairing + ``S[y_i, y_j]`` between all other pairs (view-blocked rows). The
    trainer calls ``rule(index, meta, n_views)`` with the batch's sample indices; the identity names the rule in
    the run's fingerprint."""

    def build(index: torch.Tensor, meta, n_views: int) -> torch.Tensor:
        y = labels[index.cpu()].repeat(n_views)  # rows: view 0 of the batch, then view 1, ...
        instance = torch.arange(index.numel()).repeat(n_views)
        P = (instance[:, None] == instance[None, :]).float() + S[y][:, y]
        P.fill_diagonal_(0)
        return P

    return TargetRule(f"digit-similarity(weight={float(S.max()):g})", build)


def main() -> None:
    torch.set_num_threads(1)
    x, y, _ = images.load_digits_dataset("clean", seed=0)
    views = ImageViews(images.digits_transform())
    config = Config(modality="images", dataset="digits", encoder="mlp", method="gca_infonce", epochs=8,
                    feature_dim=64, hidden_dim=128, projection_dim=32, batch_size=256, device="cpu", amp=False,
                    checkpoint_every=0, resume=False, quiet=True, out="runs/custom_target")
    plain = setups.hierarchical_target([torch.arange(x.shape[0])], [1.0])
    custom = similarity_rule(y, similarity_table(0.02))
    for name, rule in (("pairing target", plain), ("similarity target", custom)):
        run = config.replace(out=f"runs/custom_target/{name.split()[0]}")  # a run refuses another run's folder
        features = setups.features_of(setups.train_with_target(run, x, views, rule), x)
        accuracy = setups.probe(features, y, labels_per_class=5)
        centroids = torch.stack([features[y == k].mean(0) for k in range(10)])
        distance = torch.cdist(centroids, centroids).fill_diagonal_(float("inf"))
        nearest = distance.argmin(1).tolist()
        hits = sum((min(k, j), max(k, j)) in SIMILAR_PAIRS for k, j in enumerate(nearest))
        print(f"{name:<18}: 5-labels/class probe {accuracy:.3f}; nearest other centroid is a 'similar' digit for "
              f"{hits}/10 digits")


if __name__ == "__main__":
    main()
