"""Evaluation metrics for learned representations (docs/maths.md, section 4).

All functions take frozen features as tensors, compute without gradients, and return Python floats.

* :func:`linear_probe`: a multinomial logistic regression on standardised features (full-batch L-BFGS), test
  accuracy; optionally trained on ``k`` labels per class, averaged over label draws (few-label probe).
* :func:`knn_accuracy`: weighted k-nearest-neighbour vote under cosine similarity.
* :func:`alignment`, :func:`uniformity`: Wang & Isola (2020), on L2-normalised features.
* :func:`wdm`: the Wasserstein dependency measure ``W1(p_XY, p_X (x) p_Y)`` estimated with entropic OT.

Conventions: features are ``(N, d)`` (rows are samples; tensors, NumPy arrays or lists); labels are ``(N,)`` integers of any values (they are
mapped to ``0..K-1`` through the classes present in the training labels; a test sample whose class never appears
in training counts as an error).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from .arrays import as_labels, as_tensor, label_classes
from .checks import check_number, check_positive_int


# --------------------------------------------------------------------------------------------------- input checks
def _check_features(name: str, x: Tensor) -> Tensor:
    x = as_tensor(name, x)
    if x.is_complex():
        raise TypeError(f"{name}: expected real features, got dtype {x.dtype}")
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty (N, d) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return x.detach()


def _check_labels(name: str, y, n: int, classes=None) -> Tensor:
    """Class labels as int64 codes (:func:`otalign.arrays.as_labels`: integers, booleans, floats or strings;
    ``classes`` shares one coding between training and test labels)."""
    y = as_labels(name, y, classes)
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},) to match the features, got {tuple(y.shape)}")
    return y.detach()


def _encode_labels(train_labels: Tensor, test_labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """Map labels to ``0..K-1`` over the training classes; unseen test classes become ``-1`` (never predicted)."""
    classes, train_idx = torch.unique(train_labels, return_inverse=True)
    position = torch.searchsorted(classes, test_labels.contiguous()).clamp_max(classes.numel() - 1)
    test_idx = torch.where(classes[position] == test_labels, position, torch.full_like(position, -1))
    return train_idx, test_idx, classes.numel()


# --------------------------------------------------------------------------------------------------- linear probe
def sample_per_class(labels: Tensor, per_class: int, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """Indices of ``per_class`` samples drawn without replacement from each class of ``labels`` ``(N,)``.

    Returns a sorted ``(K * per_class,)`` LongTensor. Raises ``ValueError`` if a class has fewer samples.
    """
    per_class = check_positive_int("labels_per_class", per_class)
    labels = as_labels("labels", labels)
    labels = _check_labels("labels", labels, labels.numel()).cpu()
    chosen = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        if members.numel() < per_class:
            raise ValueError(
                f"labels_per_class: class {int(c)} has only {members.numel()} training samples, "
                f"fewer than labels_per_class={per_class}"
            )
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


def train_linear_classifier(
    features: Tensor, labels: Tensor, num_classes: int, *, weight_decay: float = 1e-4, max_iter: int = 200
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS (strong-Wolfe line search).

    Minimises ``mean_i CE(W x_i + b, y_i) + weight_decay / 2 * |W|_F^2`` (the bias is not penalised).

    Args:
        features: ``(N, d)`` (already standardised by the caller).
        labels: ``(N,)`` in ``0..num_classes-1``.

    Returns:
        ``W (num_classes, d)`` and ``b (num_classes,)``.
    """
    d = features.shape[1]
    weight = torch.zeros(num_classes, d, dtype=features.dtype, device=features.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=features.dtype, device=features.device, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10,
        history_size=20, line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    return weight.detach(), bias.detach()


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    labels_per_class: Optional[int] = None,
    draws: int = 5,
    seed: int = 0,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """Test accuracy of a linear classifier on frozen features.

    Features are standardised per dimension with the mean and standard deviation of all ``train_features``
    (labels are not needed for that, so the few-label probe uses them too), then
    :func:`train_linear_classifier` fits a multinomial logistic regression.

    Args:
        train_features, test_features: ``(N_train, d)``, ``(N_test, d)``.
        train_labels, test_labels: ``(N_train,)``, ``(N_test,)`` integers.
        labels_per_class: ``None`` trains on every training label; ``k`` trains on ``k`` randomly drawn labelled
            samples per class (:func:`sample_per_class`) and averages the accuracy over ``draws`` draws. The full
            probe saturates on easy data; few-label probes separate methods.
        draws: label draws averaged in the few-label mode (ignored otherwise).
        seed: seeds the label draws (draw ``r`` uses a generator seeded with ``seed + r``).
        weight_decay: L2 penalty on the weights.
        max_iter: L-BFGS iterations.

    Returns:
        Accuracy in [0, 1] (mean over draws in the few-label mode).

    Example::

        >>> acc = linear_probe(f_train, y_train, f_test, y_test)
        >>> acc5 = linear_probe(f_train, y_train, f_test, y_test, labels_per_class=5, draws=5)
    """
    train_features = _check_features("train_features", train_features)
    test_features = _check_features("test_features", test_features)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train_features, test_features: feature dimensions differ ({train_features.shape[1]} vs "
            f"{test_features.shape[1]})"
        )
    classes = label_classes(train_labels, test_labels, names=("train_labels", "test_labels"))
    train_labels = _check_labels("train_labels", train_labels, train_features.shape[0], classes)
    test_labels = _check_labels("test_labels", test_labels, test_features.shape[0], classes)
    draws = check_positive_int("draws", draws)
    weight_decay = check_number("weight_decay", weight_decay)
    max_iter = check_positive_int("max_iter", max_iter)
    seed = check_positive_int("seed", seed, minimum=0)

    device = train_features.device
    train_features = train_features.float()
    test_features = test_features.float().to(device)
    mean = train_features.mean(0)
    std = train_features.std(0, unbiased=False).clamp_min(1e-8)
    train_x = (train_features - mean) / std
    test_x = (test_features - mean) / std
    train_y, test_y, num_classes = _encode_labels(train_labels.to(device), test_labels.to(device))

    def accuracy(index: Optional[Tensor]) -> float:
        x, y = (train_x, train_y) if index is None else (train_x[index], train_y[index])
        weight, bias = train_linear_classifier(x, y, num_classes, weight_decay=weight_decay, max_iter=max_iter)
        predicted = (test_x @ weight.T + bias).argmax(1)
        return (predicted == test_y).float().mean().item()

    if labels_per_class is None:
        return accuracy(None)
    scores = []
    for r in range(draws):
        generator = torch.Generator().manual_seed(seed + r)
        scores.append(accuracy(sample_per_class(train_y, labels_per_class, generator=generator).to(device)))
    return sum(scores) / len(scores)


# --------------------------------------------------------------------------------------------------- kNN
def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    block_size: int = 1024,
) -> float:
    """Weighted kNN accuracy under cosine similarity (the usual SSL monitor).

    Each test sample takes its ``k`` most cosine-similar training samples; neighbour ``j`` votes for its class with
    weight ``exp(s_j / temperature)``; the class with the largest total wins.

    Args:
        train_features, test_features: ``(N_train, d)``, ``(N_test, d)``; L2-normalised inside.
        train_labels, test_labels: ``(N_train,)``, ``(N_test,)`` integers.
        k: neighbours (capped at ``N_train``).
        temperature: > 0; small values approach an unweighted-by-rank nearest-neighbour vote.
        block_size: test rows per similarity block (memory ``block_size x N_train``).

    Returns:
        Accuracy in [0, 1].
    """
    train_features = _check_features("train_features", train_features)
    test_features = _check_features("test_features", test_features)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError("train_features, test_features: feature dimensions differ")
    classes = label_classes(train_labels, test_labels, names=("train_labels", "test_labels"))
    train_labels = _check_labels("train_labels", train_labels, train_features.shape[0], classes)
    test_labels = _check_labels("test_labels", test_labels, test_features.shape[0], classes)
    k = check_positive_int("k", k)
    temperature = check_number("temperature", temperature, strict=True, finite=False)
    block_size = check_positive_int("block_size", block_size)

    device = train_features.device
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float().to(device), dim=1)
    train_y, test_y, num_classes = _encode_labels(train_labels.to(device), test_labels.to(device))
    k = min(k, train.shape[0])
    correct = 0
    for start in range(0, test.shape[0], block_size):
        sims, idx = (test[start : start + block_size] @ train.T).topk(k, dim=1)
        weights = torch.exp((sims - 1) / temperature)  # shifted by the max possible similarity: same argmax
        votes = torch.zeros(sims.shape[0], num_classes, device=device).scatter_add_(1, train_y[idx], weights)
        correct += (votes.argmax(1) == test_y[start : start + block_size]).sum().item()
    return correct / test.shape[0]


# --------------------------------------------------------------------------------------------------- Wang & Isola
def alignment(z0: Tensor, z1: Tensor, alpha: float = 2) -> float:
    """``E_i |u_i - v_i|^alpha`` over positive pairs, ``u = z0_i / |z0_i|``, ``v = z1_i / |z1_i|``. Lower is better.

    Args:
        z0, z1: ``(N, d)`` embeddings of two views; row ``i`` of each is the same sample.
        alpha: exponent (> 0).
    """
    z0, z1 = _check_features("z0", z0), _check_features("z1", z1)
    if z0.shape != z1.shape:
        raise ValueError(f"z0, z1: shapes differ: {tuple(z0.shape)} vs {tuple(z1.shape)}")
    alpha = check_number("alpha", alpha, strict=True)
    u, v = F.normalize(z0.double(), dim=1), F.normalize(z1.double(), dim=1)
    return (u - v).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: Tensor, t: float = 2, *, block_size: int = 1024) -> float:
    """``log E_{i<j} exp(-t |u_i - u_j|^2)`` over distinct pairs of normalised embeddings. Lower is more uniform.

    Args:
        z: ``(N, d)``, ``N >= 2``.
        t: > 0.
        block_size: rows per block (memory ``block_size x N``; no ``N^2 / 2`` pair list is built).
    """
    z = _check_features("z", z)
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"z: need at least 2 samples, got {n}")
    t = check_number("t", t, strict=True)
    block_size = check_positive_int("block_size", block_size)
    u = F.normalize(z.double(), dim=1)
    cols = torch.arange(n, device=u.device)
    parts = []
    for start in range(0, n - 1, block_size):
        rows = torch.arange(start, min(start + block_size, n), device=u.device)
        sq = (2 - 2 * u[rows] @ u.T).clamp_min(0)  # |u_i - u_j|^2 for unit vectors
        exponent = (-t * sq).masked_fill(cols[None, :] <= rows[:, None], -math.inf)  # keep pairs i < j
        parts.append(torch.logsumexp(exponent.flatten(), dim=0))
    return (torch.logsumexp(torch.stack(parts), dim=0) - math.log(n * (n - 1) / 2)).item()


# --------------------------------------------------------------------------------------------------- WDM
def wdm(
    z0: Tensor,
    z1: Tensor,
    *,
    eps: float = 0.05,
    max_iter: int = 500,
    seed: int = 0,
    tol: float = 1e-4,
    max_samples: Optional[int] = None,
) -> float:
    """Wasserstein dependency measure ``W1(p_XY, p_X (x) p_Y)`` between paired embeddings (docs/maths.md, section 4).

    Both embeddings are first L2-normalised per row (so the value is on the scale of unit vectors and does not
    reward large norms). The joint sample is ``[z0_i, z1_i]`` (``(N, d0 + d1)``), the product sample
    ``[z0_i, z1_pi(i)]`` with a random permutation ``pi`` (seeded by ``seed``), which breaks the pairing but keeps
    both marginals. The value is ``<P, C>`` of the entropic OT plan between the two uniform samples for the
    euclidean cost ``C_ij = |joint_i - product_j|`` (``otalign.solve``, balanced Sinkhorn), i.e. the transport cost
    of the entropic plan, an upper estimate of W1 that is biased upward by the entropic blur (``eps``, in the
    units of the cost) and by finite ``N``: compare values computed with the same ``N`` and ``eps``.
    0 would mean independence; the more ``z1`` is determined by ``z0``, the larger the value.

    Args:
        z0, z1: ``(N, d0)``, ``(N, d1)``, row ``i`` of each is the same sample; ``N >= 2``.
        eps: entropic strength of the solve (> 0).
        max_iter: Sinkhorn iteration cap.
        seed: seeds the permutation.
        tol: Sinkhorn stopping tolerance (L1 marginal error); a warning says when ``max_iter`` was not enough.
        max_samples: use a random subset of this many pairs (seeded by ``seed``) when ``N`` is larger; each
            Sinkhorn iteration costs ``O(N^2 (d0 + d1))`` (memory stays ``O(N)``: the cost is computed in blocks).
    """
    from .geometry import PointCloud
    from .problem import Problem
    from .solving import solve

    z0, z1 = _check_features("z0", z0), _check_features("z1", z1)
    if z0.shape[0] != z1.shape[0]:
        raise ValueError(f"z0, z1: need the same number of rows (pairs), got {z0.shape[0]} and {z1.shape[0]}")
    if z0.shape[0] < 2:
        raise ValueError(f"z0, z1: need at least 2 pairs, got {z0.shape[0]}")
    if max_samples is not None:
        max_samples = check_positive_int("max_samples", max_samples, minimum=2)
    seed = check_positive_int("seed", seed, minimum=0)
    u, v = F.normalize(z0.float(), dim=1), F.normalize(z1.float().to(z0.device), dim=1)
    generator = torch.Generator().manual_seed(seed)
    if max_samples is not None and u.shape[0] > max_samples:
        keep = torch.randperm(u.shape[0], generator=generator)[:max_samples].to(u.device)
        u, v = u[keep], v[keep]
    perm = torch.randperm(u.shape[0], generator=generator).to(u.device)
    joint = torch.cat([u, v], dim=1)
    product = torch.cat([u, v[perm]], dim=1)
    with torch.no_grad():
        problem = Problem(PointCloud(joint, product, cost="euclidean"), eps=eps)
        plan = solve(problem, max_iter=max_iter, tol=tol, grad="detach")
        return float(plan.value_linear)


__all__ = [
    "alignment",
    "knn_accuracy",
    "linear_probe",
    "sample_per_class",
    "train_linear_classifier",
    "uniformity",
    "wdm",
]
