"""Small seeded two-domain problems for the domain-adaptation tests (float64 NumPy, as POT's examples)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class Domains:
    """Source ``Xs (n, d)``, ``ys (n,)``; target ``Xt (m, d)``, ``yt (m,)`` (a shifted, scaled copy of the class
    structure); new points ``Xs_new``, ``Xt_new`` that were not fitted."""

    Xs: np.ndarray
    ys: np.ndarray
    Xt: np.ndarray
    yt: np.ndarray
    Xs_new: np.ndarray
    Xt_new: np.ndarray


def make_domains(n: int = 40, m: int = 30, d: int = 3, classes: int = 3, seed: int = 0) -> Domains:
    rng = np.random.default_rng(seed)
    ys, yt = rng.integers(0, classes, n), rng.integers(0, classes, m)
    Xs = rng.normal(size=(n, d)) + 2.0 * ys[:, None]
    Xt = 1.2 * rng.normal(size=(m, d)) + 2.0 * yt[:, None] + 0.5
    Xs_new = rng.normal(size=(7, d)) + 2.0
    Xt_new = rng.normal(size=(5, d)) + 2.5
    return Domains(Xs, ys, Xt, yt, Xs_new, Xt_new)


@pytest.fixture
def domains() -> Domains:
    return make_domains()


@pytest.fixture
def small_domains() -> Domains:
    """24 source, 18 target samples, for the class-regularised MM (thousands of small Sinkhorn iterations)."""
    return make_domains(24, 18, seed=1)
