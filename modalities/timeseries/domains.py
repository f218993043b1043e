"""Synthetic device shifts of real sensor recordings, as domains.

A *device* is a fixed transform of a recording ``(C, T)`` that mimics a different sensor or a different way of
wearing it, applied in this order:

1. rotation: the same 3-D rotation ``R`` applied to every channel triad (BasicMotions: the accelerometer's x, y, z
   and the gyroscope's x, y, z, :data:`~otalign.modalities.timeseries.datasets.BASICMOTIONS_TRIADS`), i.e. the
   device is mounted in another orientation; each triad's norm is preserved at every step;
2. per-channel gain and offset: ``x_c -> gain_c x_c + offset_c`` (calibration differences);
3. sampling rate: resampled to ``round(rate T)`` steps and back to ``T`` (a lower-rate sensor, upsampled;
   :func:`~otalign.modalities.timeseries.resampling.resample_length`);
4. additive Gaussian noise of the device's ``noise_std`` (fresh noise for every recording).

:func:`device_shift_domains` gives each domain its own fixed device and returns the domain id of every recording,
for ``otalign.targets.domain_prior`` or leave-one-domain-out evaluation. Amplitudes (``offset_std``, noise) are in
the data's units: standardise the channels first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from .datasets import BASICMOTIONS_TRIADS
from .resampling import resample_length


def _check_triads(triads: Sequence[Sequence[int]], n_channels: int) -> tuple[tuple[int, int, int], ...]:
    triads = tuple(tuple(int(i) for i in t) for t in triads)
    flat = [i for t in triads for i in t]
    if any(len(t) != 3 for t in triads) or len(set(flat)) != len(flat) or any(not 0 <= i < n_channels for i in flat):
        raise ValueError(f"triads: expected disjoint triples of channel indices in 0..{n_channels - 1}, got {triads}")
    return triads


def _check_series_batch(X: Tensor) -> None:
    if not isinstance(X, Tensor) or X.dim() != 3 or not X.is_floating_point():
        raise ValueError(f"X: expected a float tensor (N, C, T), got {getattr(X, 'shape', type(X).__name__)}")


def random_rotation(
    generator: Optional[torch.Generator] = None, max_angle: float = 180.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """A random 3-D rotation matrix ``(3, 3)`` (orthogonal, determinant +1): about a uniformly random axis, by an
    angle drawn uniformly from ``[0, max_angle]`` degrees (Rodrigues' formula)."""
    if not 0 <= max_angle <= 180:
        raise ValueError(f"max_angle: expected degrees in [0, 180], got {max_angle}")
    axis = torch.randn(3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm().clamp_min(1e-12)
    angle = float(torch.rand((), generator=generator, dtype=torch.float64)) * math.radians(max_angle)
    a, b, c = axis.tolist()
    k = torch.tensor([[0.0, -c, b], [c, 0.0, -a], [-b, a, 0.0]], dtype=torch.float64)
    rotation = torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)
    return rotation.to(dtype)


def rotate_triads(X: Tensor, rotation: Tensor, triads: Sequence[Sequence[int]] = BASICMOTIONS_TRIADS) -> Tensor:
    """Apply ``rotation`` (``(3, 3)``, or ``(N, 3, 3)`` one per series) to each channel triad of ``X (N, C, T)``:
    ``X[:, triad, t] <- R X[:, triad, t]``. Other channels are copied unchanged."""
    _check_series_batch(X)
    triads = _check_triads(triads, X.shape[1])
    if rotation.shape not in ((3, 3), (X.shape[0], 3, 3)):
        raise ValueError(f"rotation: expected (3, 3) or ({X.shape[0]}, 3, 3), got {tuple(rotation.shape)}")
    rotation = rotation.to(X.device, X.dtype)
    out = X.clone()
    for triad in triads:
        index = list(triad)
        out[:, index] = torch.matmul(rotation, X[:, index])
    return out


@dataclass(frozen=True, eq=False)
class DeviceShift:
    """One device: ``rotation (3, 3)``, ``gain (C,)``, ``offset (C,)``, ``rate`` (sampling-rate factor),
    ``noise_std``, and the channel ``triads`` the rotation acts on (see the module docstring for the order).

    Example::

        >>> device = DeviceShift.random(6, torch.Generator().manual_seed(0))
        >>> shifted = device(X, generator=torch.Generator().manual_seed(1))  # X: (N, 6, T)
    """

    rotation: Tensor
    gain: Tensor
    offset: Tensor
    rate: float = 1.0
    noise_std: float = 0.0
    triads: tuple[tuple[int, int, int], ...] = BASICMOTIONS_TRIADS

    @classmethod
    def identity(cls, n_channels: int, triads: Sequence[Sequence[int]] = BASICMOTIONS_TRIADS) -> "DeviceShift":
        """The original device (no rotation, unit gain, zero offset, same rate, no noise)."""
        return cls(torch.eye(3), torch.ones(n_channels), torch.zeros(n_channels), 1.0, 0.0,
                   _check_triads(triads, n_channels))

    @classmethod
    def random(
        cls,
        n_channels: int,
        generator: Optional[torch.Generator] = None,
        *,
        triads: Sequence[Sequence[int]] = BASICMOTIONS_TRIADS,
        max_angle: float = 180.0,
        gain_std: float = 0.2,
        offset_std: float = 0.2,
        rate: Sequence[float] = (0.5, 1.0),
        noise: Sequence[float] = (0.0, 0.1),
    ) -> "DeviceShift":
        """A random device: rotation from :func:`random_rotation` (``max_angle`` degrees), gains
        ``exp(N(0, gain_std^2))`` and offsets ``N(0, offset_std^2)`` per channel, ``rate`` and ``noise_std`` drawn
        uniformly from the ranges ``rate`` and ``noise``."""
        if gain_std < 0 or offset_std < 0:
            raise ValueError(f"gain_std, offset_std: must be >= 0, got {gain_std}, {offset_std}")
        if not 0 < rate[0] <= rate[1]:
            raise ValueError(f"rate: expected 0 < low <= high, got {tuple(rate)}")
        if not 0 <= noise[0] <= noise[1]:
            raise ValueError(f"noise: expected 0 <= low <= high, got {tuple(noise)}")
        triads = _check_triads(triads, n_channels)
        rotation = random_rotation(generator, max_angle)
        gain = (gain_std * torch.randn(n_channels, generator=generator)).exp()
        offset = offset_std * torch.randn(n_channels, generator=generator)
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        return cls(
            rotation, gain, offset,
            rate[0] + (rate[1] - rate[0]) * u[0],
            noise[0] + (noise[1] - noise[0]) * u[1],
            triads,
        )

    def __call__(self, X: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """The recordings ``X (N, C, T)`` as this device records them (same shape and dtype)."""
        _check_series_batch(X)
        if X.shape[1] != self.gain.numel():
            raise ValueError(f"X: this device has {self.gain.numel()} channels, got {X.shape[1]}")
        out = rotate_triads(X, self.rotation, self.triads)
        out = out * self.gain.to(X).view(1, -1, 1) + self.offset.to(X).view(1, -1, 1)
        t = X.shape[-1]
        length = max(2, round(self.rate * t))
        if length != t:
            out = resample_length(resample_length(out, length), t)
        if self.noise_std > 0:
            draw_on = generator.device if generator is not None else out.device
            noise = torch.randn(out.shape, generator=generator, device=draw_on, dtype=out.dtype)
            out = out + self.noise_std * noise.to(out.device)
        return out


def random_devices(
    n_domains: int, n_channels: int, seed: int = 0, *, identity_first: bool = True, **device_options
) -> list[DeviceShift]:
    """``n_domains`` devices drawn from ``seed`` (:meth:`DeviceShift.random` with ``device_options``); with
    ``identity_first`` domain 0 is the original device."""
    if not isinstance(n_domains, int) or n_domains < 1:
        raise ValueError(f"n_domains: expected an int >= 1, got {n_domains!r}")
    generator = torch.Generator().manual_seed(seed)
    devices = [DeviceShift.random(n_channels, generator, **device_options) for _ in range(n_domains)]
    if identity_first:
        devices[0] = DeviceShift.identity(n_channels, devices[0].triads)
    return devices


def device_shift_domains(
    X: Tensor,
    y: Tensor,
    n_domains: int,
    seed: int = 0,
    *,
    replicate: bool = False,
    identity_first: bool = True,
    devices: Optional[Sequence[DeviceShift]] = None,
    **device_options,
) -> tuple[Tensor, Tensor, Tensor]:
    """Split real recordings into ``n_domains`` domains, each recorded by its own fixed device.

    Args:
        X: recordings ``(N, C, T)`` (standardised; BasicMotions: 6 channels, two triads).
        y: labels ``(N,)``.
        n_domains: number of domains (devices).
        seed: fixes the devices (:func:`random_devices`), the assignment and the noise.
        replicate: ``False``: each recording goes to exactly one domain, stratified by label (every class is
            spread over the domains as evenly as possible) and the sample order is kept (row ``i`` is recording
            ``i``); ``True``: every recording appears in every domain, stacked domain by domain
            (``n_domains N`` rows).
        identity_first: domain 0 keeps the original device.
        devices: explicit devices (overrides ``seed``'s devices, ``identity_first`` and ``device_options``).
        device_options: passed to :meth:`DeviceShift.random` (``max_angle``, ``gain_std``, ``offset_std``,
            ``rate``, ``noise``, ``triads``).

    Returns:
        ``(X_shifted, y, domains)``: float tensor of ``X``'s dtype, labels, and domain ids ``(rows,)`` int64 in
        ``0 .. n_domains - 1``.

    Example::

        >>> X, y, _ = load_aeon_dataset("BasicMotions", "all")
        >>> Xd, yd, domains = device_shift_domains(standardize(X)[0], y, n_domains=4, seed=0)
    """
    _check_series_batch(X)
    if not isinstance(y, Tensor) or y.shape != (X.shape[0],):
        raise ValueError(f"y: expected a tensor of shape ({X.shape[0]},), got {getattr(y, 'shape', type(y).__name__)}")
    if devices is None:
        devices = random_devices(n_domains, X.shape[1], seed, identity_first=identity_first, **device_options)
    elif len(devices) != n_domains:
        raise ValueError(f"devices: expected {n_domains} devices, got {len(devices)}")
    generator = torch.Generator().manual_seed(seed + 1)
    if replicate:
        parts = [device(X, generator) for device in devices]
        domains = torch.arange(n_domains).repeat_interleave(X.shape[0])
        return torch.cat(parts), y.repeat(n_domains), domains
    domains = torch.empty(X.shape[0], dtype=torch.int64)
    position = 0
    for label in torch.unique(y.cpu()):
        members = torch.nonzero(y.cpu() == label).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        domains[members] = (torch.arange(members.numel()) + position) % n_domains
        position += members.numel()
    domains = domains.to(X.device)
    out = torch.empty_like(X)
    for d, device in enumerate(devices):
        rows = domains == d
        if rows.any():
            out[rows] = device(X[rows], generator)
    return out, y.clone(), domains


__all__ = ["DeviceShift", "device_shift_domains", "random_devices", "random_rotation", "rotate_triads"]
