"""Synthetic correlated multi-source generators.

Both generators are *joint*: window ``k`` of every source is drawn from one random
state seeded by ``(seed, k)``, so N edge nodes in N processes that open the same spec
see the sources' true correlation without talking to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from ndsc.sources.base import SourceError, Window, parse_kv, register_source

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def equicorrelation(n: int, rho: float) -> np.ndarray:
    """Correlation matrix with unit diagonal and ``rho`` everywhere else."""
    if not -1.0 / max(n - 1, 1) <= rho < 1.0:
        raise SourceError(f"rho={rho} does not give a valid {n}x{n} correlation matrix")
    c = np.full((n, n), float(rho))
    np.fill_diagonal(c, 1.0)
    return c


@dataclass
class GaussianSources:
    """N jointly Gaussian unit-variance sources, i.i.d. over channels and samples.

    Args:
        n_sources: number of sources N.
        rho: equicorrelation between every pair (ignored if ``corr`` is given).
        corr: explicit N×N covariance (must be positive definite).
        channels, samples: window shape (C, T) of every source.
        seed: base seed; window k uses ``(seed, k)``.
    """

    n_sources: int = 2
    rho: float = 0.9
    corr: np.ndarray | None = None
    channels: int = 1
    samples: int = 64
    seed: int = 0
    _chol: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cov = equicorrelation(self.n_sources, self.rho) if self.corr is None else np.asarray(self.corr, float)
        if cov.shape != (self.n_sources, self.n_sources):
            raise SourceError(f"covariance must be {self.n_sources}x{self.n_sources}")
        try:
            self._chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError as exc:
            raise SourceError("covariance is not positive definite") from exc

    @property
    def window_shape(self) -> tuple[int, int]:
        return (self.channels, self.samples)

    @property
    def source_names(self) -> list[str]:
        return [f"s{i}" for i in range(self.n_sources)]

    def window(self, k: int) -> np.ndarray:
        """Window ``k`` of all sources: float32 (N, C, T)."""
        rng = np.random.default_rng([self.seed, k])
        g = rng.standard_normal((self.n_sources, self.channels * self.samples))
        return (self._chol @ g).reshape(self.n_sources, self.channels, self.samples).astype(np.float32)

    def windows_array(self, start: int, count: int) -> np.ndarray:
        """Windows ``start..start+count-1`` stacked: (count, N, C, T)."""
        return np.stack([self.window(k) for k in range(start, start + count)])


def _lead_projection() -> np.ndarray:
    """12×3 projection of a heart dipole (x: left, y: down, z: front) onto the standard leads.

    Limb leads obey Einthoven (III = II − I) and Goldberger (aVR = −(I+II)/2 …)
    exactly, as in a real recording, so several leads are nearly redundant.
    """
    lead_i = np.array([1.0, 0.0, 0.0])
    lead_ii = np.array([0.5, 0.866, 0.0])
    lead_iii = lead_ii - lead_i
    avr = -(lead_i + lead_ii) / 2
    avl = lead_i - lead_ii / 2
    avf = lead_ii - lead_i / 2
    # Precordial leads sweep from right-front (V1) to left-side (V6).
    angles = np.deg2rad([-20, 10, 35, 55, 75, 95])
    precordial = [np.array([np.sin(a), 0.25, np.cos(a)]) for a in angles]
    return np.stack([lead_i, lead_ii, lead_iii, avr, avl, avf, *precordial])


# (centre s relative to R peak, width s, amplitude mV, dipole direction)
_WAVES = (
    (-0.20, 0.025, 0.15, (0.6, 0.7, 0.2)),  # P
    (-0.030, 0.010, -0.12, (0.2, -0.3, 0.9)),  # Q
    (0.000, 0.012, 1.10, (0.55, 0.75, -0.35)),  # R
    (0.035, 0.012, -0.30, (-0.2, 0.3, 0.9)),  # S
    (0.30, 0.060, 0.30, (0.5, 0.6, 0.5)),  # T
)


@dataclass
class SyntheticECG:
    """Correlated multi-lead ECG-like signals from a randomly varying cardiac dipole.

    Each window has its own heart rate, electrical axis and amplitudes (so windows
    differ like patients do), per-lead baseline wander and sensor noise. Sources are
    lead groups: ``groups=((0,), (1,), …)`` makes one source per lead.

    Args:
        leads: lead names out of :data:`STANDARD_LEADS` to generate.
        groups: indices into ``leads`` per source (all groups the same size).
        sample_rate: Hz.
        samples: window length T.
        noise_mv: white sensor noise standard deviation (mV).
        seed: base seed; window k uses ``(seed, k)``.
    """

    leads: Sequence[str] = STANDARD_LEADS
    groups: Sequence[Sequence[int]] | None = None
    sample_rate: float = 250.0
    samples: int = 256
    noise_mv: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [l for l in self.leads if l not in STANDARD_LEADS]
        if unknown:
            raise SourceError(f"unknown leads {unknown}")
        if self.groups is None:
            self.groups = tuple((i,) for i in range(len(self.leads)))
        sizes = {len(g) for g in self.groups}
        if len(sizes) != 1:
            raise SourceError("all lead groups must have the same number of leads")
        proj = _lead_projection()
        self._proj = proj[[STANDARD_LEADS.index(l) for l in self.leads]]

    @property
    def _groups(self) -> Sequence[Sequence[int]]:
        assert self.groups is not None  # filled in by __post_init__
        return self.groups

    @property
    def n_sources(self) -> int:
        return len(self._groups)

    @property
    def window_shape(self) -> tuple[int, int]:
        return (len(self._groups[0]), self.samples)

    @property
    def source_names(self) -> list[str]:
        return ["+".join(self.leads[i] for i in g) for g in self._groups]

    def window(self, k: int) -> np.ndarray:
        """Window ``k`` of all sources: float32 (N, C, T) in mV."""
        rng = np.random.default_rng([self.seed, k])
        fs, n = self.sample_rate, self.samples
        t = np.arange(n) / fs
        rr = 60.0 / rng.uniform(55, 110)  # s per beat
        first_r = rng.uniform(0, rr) - rr
        rotation = _random_rotation(rng, max_angle=0.35)
        gain = rng.uniform(0.7, 1.3)
        dipole = np.zeros((3, n))
        beat = first_r
        while beat < t[-1] + 0.5:
            for centre, width, amp, direction in _WAVES:
                d = rotation @ np.asarray(direction) / np.linalg.norm(direction)
                a = amp * gain * rng.uniform(0.9, 1.1)
                dipole += np.outer(d, a * np.exp(-0.5 * ((t - beat - centre) / width) ** 2))
            beat += rr * rng.uniform(0.95, 1.05)
        leads = self._proj @ dipole  # (L, T)
        wander_f = rng.uniform(0.05, 0.4, size=(len(self.leads), 1))
        wander = 0.1 * np.sin(2 * np.pi * wander_f * t + rng.uniform(0, 2 * np.pi, size=(len(self.leads), 1)))
        leads = leads + wander + self.noise_mv * rng.standard_normal(leads.shape)
        return np.stack([leads[list(g)] for g in self._groups]).astype(np.float32)

    def windows_array(self, start: int, count: int) -> np.ndarray:
        """Windows ``start..start+count-1`` stacked: (count, N, C, T)."""
        return np.stack([self.window(k) for k in range(start, start + count)])


def _random_rotation(rng: np.random.Generator, max_angle: float) -> np.ndarray:
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


class JointSourceView:
    """One source of a joint generator as a :class:`WindowSource` for an edge node."""

    def __init__(
        self,
        joint,
        source_index: int,
        input_shape: tuple[int, ...],
        *,
        window_period: float,
        start: int = 0,
        count: int | None = None,
    ):
        if not 0 <= source_index < joint.n_sources:
            raise SourceError(f"source index {source_index} out of range for {joint.n_sources} sources")
        if tuple(joint.window_shape) != tuple(input_shape):
            raise SourceError(f"source windows {joint.window_shape} != bundle input shape {input_shape}")
        self.joint = joint
        self.source_index = source_index
        self.channel_names = tuple(f"{joint.source_names[source_index]}.{c}" for c in range(input_shape[0]))
        self.window_period = window_period
        self.start = start
        self.count = count

    def windows(self) -> Iterator[Window]:
        k = self.start
        while self.count is None or k < self.start + self.count:
            yield Window(k, self.joint.window(k)[self.source_index], 0.0)
            k += 1


def _common(kv: dict[str, str]) -> tuple[int, int | None, int]:
    return int(kv.pop("start", 0)), (int(kv.pop("count")) if "count" in kv else None), int(kv.pop("seed", 0))


@register_source("gaussian")
def _open_gaussian(args: str, source_index: int, input_shape: tuple[int, ...]) -> JointSourceView:
    """``gaussian:n=2,rho=0.9,seed=0,start=0,count=100,rate=1000`` (rate: samples/s)."""
    kv = parse_kv(args)
    start, count, seed = _common(kv)
    n = int(kv.pop("n", 2))
    rho = float(kv.pop("rho", 0.9))
    rate = float(kv.pop("rate", 1000.0))
    if kv:
        raise SourceError(f"unknown gaussian arguments {sorted(kv)}")
    joint = GaussianSources(n_sources=n, rho=rho, channels=input_shape[0], samples=input_shape[1], seed=seed)
    return JointSourceView(
        joint, source_index, input_shape, window_period=input_shape[1] / rate, start=start, count=count
    )


@register_source("ecg-synth")
def _open_ecg_synth(args: str, source_index: int, input_shape: tuple[int, ...]) -> JointSourceView:
    """``ecg-synth:leads=I;II;V1,fs=250,seed=0,start=0,count=100``; one source per group of C leads."""
    kv = parse_kv(args)
    start, count, seed = _common(kv)
    leads = tuple(kv.pop("leads").split(";")) if "leads" in kv else STANDARD_LEADS
    fs = float(kv.pop("fs", 250.0))
    if kv:
        raise SourceError(f"unknown ecg-synth arguments {sorted(kv)}")
    c = input_shape[0]
    if len(leads) % c:
        raise SourceError(f"{len(leads)} leads do not split into groups of {c}")
    groups = tuple(tuple(range(i, i + c)) for i in range(0, len(leads), c))
    joint = SyntheticECG(leads=leads, groups=groups, sample_rate=fs, samples=input_shape[1], seed=seed)
    return JointSourceView(
        joint, source_index, input_shape, window_period=input_shape[1] / fs, start=start, count=count
    )
