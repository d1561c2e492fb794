"""Data sets as stacked joint windows (n, N, C, *S), with 80/10/10 and 5-fold splits.

A data set kind registers a builder with :func:`register_dataset`. Synthetic windows are
independent draws, so they split by window index; real-data builders split by
patient/record/scene (never by window) with :func:`group_split`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ndsc.registry import Registry

from ndsc.sources.synthetic import GaussianSources, SyntheticECG
from models.config import DataConfig


@dataclass
class JointDataset:
    """Splits of joint windows plus what a bundle must record about them.

    Attributes:
        train, val, test: float32 arrays (n, N, C, *S).
        modality: "gaussian" | "ecg" | "stereo".
        source_names: one name per source; channel_names: per source, its channel names.
        sample_rate: Hz for time series, None for images.
        edge_source: the ``ndsc edge --source`` spec that replays this data (test split).
        info: extra facts for the manifest (peak value, units, groups…).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    modality: str
    source_names: list[str]
    channel_names: list[list[str]]
    sample_rate: float | None
    edge_source: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_sources(self) -> int:
        return self.train.shape[1]

    @property
    def window_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[2:])


#: builders by ``DataConfig.kind``; the synthetic ones register below, modality modules on import
DATASETS: Registry[Callable[[DataConfig], JointDataset]] = Registry(
    "data set kind", "training.datasets_ecg", "training.datasets_stereo")
register_dataset = DATASETS.register


def build_dataset(cfg: DataConfig) -> JointDataset:
    """Build the registered data set ``cfg.kind``."""
    return DATASETS.get(cfg.kind)(cfg)


def split_counts(n: int) -> tuple[int, int, int]:
    """80/10/10 counts of ``n`` items (test and val get at least one when n ≥ 3)."""
    n_test = max(1, round(0.1 * n)) if n >= 3 else 0
    n_val = max(1, round(0.1 * n)) if n >= 3 else 0
    return n - n_val - n_test, n_val, n_test


def group_split(groups: list[str], seed: int = 0, fold: int | None = None,
                n_folds: int = 5) -> tuple[list[str], list[str], list[str]]:
    """Split distinct group ids (patients, records, scenes) into train/val/test.

    ``fold=None``: a seeded 80/10/10 shuffle. ``fold=k``: k-th of ``n_folds`` folds is the
    test set, the next fold validation, the rest training.
    """
    unique = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    if fold is None:
        n_train, n_val, _ = split_counts(len(order))
        return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1}")
    folds = [order[i::n_folds] for i in range(n_folds)]
    test, val = folds[fold], folds[(fold + 1) % n_folds]
    train = [g for k, f in enumerate(folds) if k not in (fold, (fold + 1) % n_folds) for g in f]
    return train, val, test


def _index_split(cfg: DataConfig) -> tuple[range, range, range]:
    n_train, n_val, n_test = split_counts(cfg.n_windows)
    return range(0, n_train), range(n_train, n_train + n_val), range(n_train + n_val, cfg.n_windows)


@register_dataset("gaussian")
def gaussian_dataset(cfg: DataConfig) -> JointDataset:
    """params: n (sources), rho, channels, samples, seed."""
    p = {"n": 2, "rho": 0.9, "channels": 1, "samples": 64, "seed": 0, **cfg.params}
    gen = GaussianSources(n_sources=p["n"], rho=p["rho"], channels=p["channels"], samples=p["samples"],
                          seed=p["seed"])
    tr, va, te = _index_split(cfg)
    spec = f"gaussian:n={p['n']},rho={p['rho']},seed={p['seed']},start={te.start},count={len(te)}"
    return JointDataset(
        train=gen.windows_array(tr.start, len(tr)), val=gen.windows_array(va.start, len(va)),
        test=gen.windows_array(te.start, len(te)), modality="gaussian", source_names=gen.source_names,
        channel_names=[[f"{s}.{c}" for c in range(p["channels"])] for s in gen.source_names],
        sample_rate=None, edge_source=spec, info={"rho": p["rho"], "variance": 1.0},
    )


@register_dataset("ecg-synth")
def ecg_synth_dataset(cfg: DataConfig) -> JointDataset:
    """params: leads (list), group_size, fs, samples, seed."""
    p = {"leads": ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"],
         "group_size": 1, "fs": 250.0, "samples": 256, "seed": 0, **cfg.params}
    leads, g = list(p["leads"]), int(p["group_size"])
    groups = tuple(tuple(range(i, i + g)) for i in range(0, len(leads), g))
    gen = SyntheticECG(leads=leads, groups=groups, sample_rate=p["fs"], samples=p["samples"], seed=p["seed"])
    tr, va, te = _index_split(cfg)
    spec = (f"ecg-synth:leads={';'.join(leads)},fs={p['fs']},seed={p['seed']},"
            f"start={te.start},count={len(te)}")
    return JointDataset(
        train=gen.windows_array(tr.start, len(tr)), val=gen.windows_array(va.start, len(va)),
        test=gen.windows_array(te.start, len(te)), modality="ecg", source_names=gen.source_names,
        channel_names=[[leads[i] for i in grp] for grp in groups], sample_rate=float(p["fs"]),
        edge_source=spec, info={"units": "mV", "leads": leads},
    )
