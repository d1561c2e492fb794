"""The baseline interface and registry."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

from ndsc.registry import Registry
from training.data import JointDataset

#: factories by name; the modules below register on import
BASELINES: Registry[Callable[..., "Baseline"]] = Registry(
    "baseline",
    "training.baselines.neural",
    "training.baselines.scalar",
    "training.baselines.syndrome",
    "training.baselines.learned_sw",
    "training.baselines.vq",
    "training.baselines.conventional",
)


class Baseline(ABC):
    """One coding method with the same lifecycle as the learned codec.

    Typical workflow::

        b = build_baseline("sq", step=0.5)
        info = b.fit(dataset)                  # train / design on dataset.train (val for checks)
        payloads = b.compress(windows)         # windows (n, N, C, *S) → payloads[w][i] bytes
        x_hat = b.decompress(payloads)         # (n, N, C, *S), all sources decoded jointly
    """

    #: bump when a change of the implementation changes its results (the study cache keys on it)
    version: int = 1
    #: "joint" when the decoder of a source uses the other sources' bytes, else "separate".
    decoding: str = "joint"

    def __init__(self, **params: Any):
        self.params = params

    @abstractmethod
    def fit(self, data: JointDataset) -> dict[str, Any]:
        """Train or design on ``data.train``; returns facts for the report (e.g. training seconds)."""

    @abstractmethod
    def compress(self, windows: np.ndarray) -> list[list[bytes]]:
        """Windows (n, N, C, *S) → payloads[w][i], the bytes node i sends for window w."""

    @abstractmethod
    def decompress(self, payloads: list[list[bytes]]) -> np.ndarray:
        """payloads[w][i] → reconstructions (n, N, C, *S)."""

    def analyse(self, windows: np.ndarray) -> dict[str, Any]:
        """Optional extra figures on test windows (MI terms, encoder maps); default none."""
        return {}


def register_baseline(name: str, **defaults: Any):
    """Register a :class:`Baseline` subclass (or a factory) under ``name`` with default params."""

    def deco(cls):
        def factory(**params: Any) -> Baseline:
            return cls(**{**defaults, **params})

        factory.__doc__ = cls.__doc__
        BASELINES.add(name, factory)
        return cls

    return deco


def build_baseline(name: str, **params: Any) -> Baseline:
    """Instantiate the baseline registered as ``name`` with ``params`` over its defaults."""
    return BASELINES.get(name)(**params)


def known_baselines() -> list[str]:
    return BASELINES.names()
