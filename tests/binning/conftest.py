"""Binning bundles for the tests: the study's neural-sw exported as a servable bundle (seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _export(tmp_path_factory, name: str, **kwargs) -> Path:
    from training.binning import export_binning_bundle

    return export_binning_bundle(tmp_path_factory.mktemp("binning") / name, "neural-sw", samples=512, n_windows=40,
                                 lmbda=0.14, steps=300, batch=4096, **kwargs)


@pytest.fixture(scope="session")
def binning_bundle(tmp_path_factory) -> Path:
    """Source 0 direct, source 1 syndrome-coded; the initial blocks carry n·H bits, so feedback is needed."""
    return _export(tmp_path_factory, "nsw")


@pytest.fixture(scope="session")
def sq_syndrome_bundle(tmp_path_factory) -> Path:
    """The study's sq-syndrome (uniform quantisers, Gaussian tables, no training) as a servable bundle."""
    from training.binning import export_binning_bundle

    return export_binning_bundle(tmp_path_factory.mktemp("binning") / "sq", "sq-syndrome", samples=512,
                                 n_windows=40, step=0.5)


@pytest.fixture(scope="session")
def fallback_bundle(tmp_path_factory) -> Path:
    """Initial blocks far too short and no request allowed: every window falls back to direct."""
    return _export(tmp_path_factory, "fallback", initial_factor=0.2, max_requests=0)


def test_windows(bundle_path: Path) -> tuple[int, np.ndarray]:
    """(first window index, the test windows (n, 2, 1, T)) of the bundle's edge replay spec."""
    from ndsc.bundle import load_bundle
    from ndsc.sources import parse_kv
    from ndsc.sources.synthetic import GaussianSources

    b = load_bundle(bundle_path)
    kv = parse_kv(b.extra["edge_source"].split(":", 1)[1])
    gen = GaussianSources(n_sources=2, rho=float(kv["rho"]), samples=b.sources[0].input_shape[1], seed=int(kv["seed"]))
    return int(kv["start"]), gen.windows_array(int(kv["start"]), int(kv["count"]))


test_windows.__test__ = False  # a helper, not a test
