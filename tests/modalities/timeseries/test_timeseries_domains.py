"""Tests of otalign.modalities.timeseries.domains: rotations, device transforms and the structure of the
device-shift domains (each domain's transform is one fixed device, recovered by least squares)."""

import math

import pytest
import torch

from otalign.modalities.timeseries import domains as M
from otalign.modalities.timeseries.datasets import BASICMOTIONS_TRIADS

NO_SHIFT = dict(gain_std=0.0, offset_std=0.0, rate=(1.0, 1.0), noise=(0.0, 0.0))


def recordings(n=24, c=6, t=40, seed=0, dtype=torch.float64):
    return torch.randn(n, c, t, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def fit_rotation(source, target):
    """Least-squares R with target ~ R source, from triads (n, 3, t) stacked as columns."""
    a = source.permute(1, 0, 2).reshape(3, -1)
    b = target.permute(1, 0, 2).reshape(3, -1)
    solution = torch.linalg.lstsq(a.T, b.T).solution.T
    return solution, (solution @ a - b).abs().max()


@pytest.mark.parametrize("max_angle", [180.0, 30.0])
def test_random_rotation_is_a_rotation_within_the_angle(max_angle):
    for seed in range(20):
        R = M.random_rotation(torch.Generator().manual_seed(seed), max_angle, dtype=torch.float64)
        assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
        assert abs(torch.linalg.det(R).item() - 1) < 1e-12
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (R.trace().item() - 1) / 2))))
        assert angle <= max_angle + 1e-6
    with pytest.raises(ValueError, match="max_angle"):
        M.random_rotation(max_angle=200.0)


def test_rotate_triads_preserves_norms_and_other_channels():
    X = recordings(c=7)
    R = M.random_rotation(torch.Generator().manual_seed(0), dtype=torch.float64)
    out = M.rotate_triads(X, R)
    for triad in BASICMOTIONS_TRIADS:
        idx = list(triad)
        assert torch.allclose(out[:, idx].norm(dim=1), X[:, idx].norm(dim=1), atol=1e-12)
        assert torch.allclose(out[:, idx], torch.einsum("ij,njt->nit", R, X[:, idx]), atol=1e-12)
    assert torch.equal(out[:, 6], X[:, 6])
    with pytest.raises(ValueError, match="triads"):
        M.rotate_triads(X, R, triads=((0, 1, 2), (2, 3, 4)))


def test_each_domain_is_one_fixed_rotation_shared_by_both_triads():
    X, n_domains = recordings(), 4
    y = torch.arange(X.shape[0]) % 3
    out, y_out, domains = M.device_shift_domains(X, y, n_domains, seed=5, **NO_SHIFT)
    devices = M.random_devices(n_domains, 6, seed=5, **NO_SHIFT)
    rotations = []
    for d in range(n_domains):
        rows = domains == d
        acc, gyro = list(BASICMOTIONS_TRIADS[0]), list(BASICMOTIONS_TRIADS[1])
        source = torch.cat([X[rows][:, acc], X[rows][:, gyro]])
        target = torch.cat([out[rows][:, acc], out[rows][:, gyro]])
        R, residual = fit_rotation(source, target)
        assert residual < 1e-9  # one linear map explains every recording of the domain, for both triads
        assert torch.allclose(R, devices[d].rotation.double(), atol=1e-6)
        assert torch.allclose(out[rows].view(-1, 2, 3, 40).norm(dim=2), X[rows].view(-1, 2, 3, 40).norm(dim=2))
        rotations.append(R)
    assert torch.allclose(rotations[0], torch.eye(3, dtype=torch.float64), atol=1e-9)  # identity_first
    for i in range(n_domains):
        for j in range(i + 1, n_domains):
            assert (rotations[i] - rotations[j]).abs().max() > 1e-2
    assert torch.equal(y_out, y)


def test_each_domain_has_one_fixed_gain_and_offset_per_channel():
    X = recordings()
    y = torch.zeros(X.shape[0], dtype=torch.int64)
    options = dict(max_angle=0.0, gain_std=0.3, offset_std=0.5, rate=(1.0, 1.0), noise=(0.0, 0.0))
    out, _, domains = M.device_shift_domains(X, y, 3, seed=1, identity_first=False, **options)
    for d in range(3):
        rows = domains == d
        for c in range(6):
            x, z = X[rows][:, c].flatten(), out[rows][:, c].flatten()
            design = torch.stack([x, torch.ones_like(x)], 1)
            coef = torch.linalg.lstsq(design, z.unsqueeze(1)).solution.flatten()
            assert (design @ coef - z).abs().max() < 1e-9
            assert coef[0] > 0 and abs(coef[0].item() - 1) + abs(coef[1].item()) > 1e-3


def test_assignment_is_stratified_and_keeps_order():
    X = recordings(n=40)
    y = torch.arange(40) % 4
    out, y_out, domains = M.device_shift_domains(X, y, 3, seed=0, noise=(0.0, 0.0))
    assert out.shape == X.shape and out.dtype == X.dtype and domains.dtype == torch.int64
    assert set(domains.tolist()) == {0, 1, 2}
    for label in range(4):
        counts = torch.bincount(domains[y == label], minlength=3)
        assert counts.max() - counts.min() <= 1
    identity_rows = domains == 0
    assert torch.equal(out[identity_rows], X[identity_rows])  # domain 0 is the original device


def test_replicate_stacks_every_domain():
    X = recordings(n=10)
    y = torch.arange(10) % 2
    out, y_out, domains = M.device_shift_domains(X, y, 3, seed=0, replicate=True)
    assert out.shape == (30, 6, 40) and torch.equal(y_out, y.repeat(3))
    assert torch.equal(domains, torch.arange(3).repeat_interleave(10))
    assert torch.equal(out[:10], X)


def test_domains_are_seeded():
    X = recordings()
    y = torch.arange(X.shape[0]) % 2
    a = M.device_shift_domains(X, y, 3, seed=0)
    b = M.device_shift_domains(X, y, 3, seed=0)
    c = M.device_shift_domains(X, y, 3, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_device_rate_and_noise():
    t = 100
    positions = torch.arange(t, dtype=torch.float64)
    slow = torch.cos(math.pi * 3 * (positions + 0.5) / t)
    fast = torch.cos(math.pi * 80 * (positions + 0.5) / t)
    X = (slow + fast).expand(2, 6, t).contiguous()
    device = M.DeviceShift(torch.eye(3), torch.ones(6), torch.zeros(6), rate=0.5, noise_std=0.0)
    assert torch.allclose(device(X), slow.expand(2, 6, t), atol=1e-9)  # the lower rate cannot hold `fast`
    noisy = M.DeviceShift(torch.eye(3), torch.ones(6), torch.zeros(6), rate=1.0, noise_std=0.3)
    residual = noisy(torch.zeros(50, 6, t), torch.Generator().manual_seed(0))
    assert abs(residual.std().item() - 0.3) < 0.01


def test_bad_arguments():
    X = recordings()
    with pytest.raises(ValueError, match="y"):
        M.device_shift_domains(X, torch.zeros(3, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="n_domains"):
        M.device_shift_domains(X, torch.zeros(X.shape[0], dtype=torch.int64), 0)
    with pytest.raises(ValueError, match="channels"):
        M.DeviceShift.identity(6)(recordings(c=4))
