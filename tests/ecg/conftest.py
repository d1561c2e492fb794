"""Fixtures of the ECG tests: the shared PhysioNet records and a tiny real-ECG bundle.

The bundle is trained on pydicom's 12-lead ECG (a real recording that ships with a
dependency), so every test built on it runs on a fresh clone; only the tests that read
PhysioNet records themselves need ``../shared/data/ecg`` (see :func:`tests.conftest.shared_data`).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_data


@pytest.fixture(scope="session")
def ecg_data() -> Path:
    """``../shared/data/ecg`` (PhysioNet records; tests and benchmarks only)."""
    return shared_data("data/ecg")


def write_wfdb(directory: Path, name: str, signal_mv, leads, fs: float, units: list[str] | None = None) -> Path:
    """Write a (C, T) record in mV as WFDB (.hea + .dat, format 16) as PhysioNet serves them; NaN = missing."""
    import numpy as np
    import wfdb

    wfdb.wrsamp(name, fs=fs, units=units or ["mV"] * len(leads), sig_name=list(leads),
                p_signal=np.asarray(signal_mv, dtype=np.float64).T, fmt=["16"] * len(leads),
                adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads), write_dir=str(directory))
    return directory / name


@pytest.fixture(scope="session")
def pydicom_wfdb(tmp_path_factory) -> Path:
    """pydicom's 12-lead ECG (10 s) resampled to 500 Hz and written as a WFDB record ``E00001``."""
    from ndsc.sources.ecg import read_dicom

    rec = read_dicom("pydicom").resample(500)
    return write_wfdb(tmp_path_factory.mktemp("wfdb"), "E00001", rec.signal, rec.leads, 500)


def tiny_ecg_config(records, **changes):
    """4 nodes × 3 leads at 500 Hz, 1024-sample windows: a few seconds of training."""
    from training.presets import get_preset

    cfg = get_preset("ecg-12lead").replace(**{"steps": 40, "batch_size": 8, "progress": False, "threads": 1,
                                              **changes})
    cfg.data.params = {**cfg.data.params, "records": [str(r) for r in records]}
    cfg.model.hidden = 16
    return cfg


@pytest.fixture(scope="session")
def ecg_bundle(tmp_path_factory) -> tuple[Path, dict]:
    """A 4×3-lead bundle trained briefly on pydicom's 12-lead ECG (split in time, 500 Hz)."""
    from ndsc.sources.ecg import PYDICOM_RECORD
    from training.pipeline import train_and_export

    return train_and_export(tiny_ecg_config([PYDICOM_RECORD]), tmp_path_factory.mktemp("bundles") / "ecg")


def tiny_variable_rate_config():
    """4 nodes × 3 leads, three operating points ("1" lowest rate … "3"; default "2"), trained
    briefly on the ECG that ships with pydicom (a minute or two on one thread)."""
    from training.presets import get_preset

    cfg = get_preset("ecg-12lead").replace(steps=30, batch_size=8, progress=False, threads=1, lr=1e-3)
    cfg.data.params = {**cfg.data.params, "records": ["pydicom"]}  # independent of the preset's data
    cfg.model.encoder, cfg.model.decoder = "ecg-lapped", "ecg-lapped"
    cfg.model.latent_channels, cfg.model.hidden, cfg.model.input_scale = 48, 32, 1.0
    cfg.model.quality_lambdas, cfg.model.default_quality = [0.02, 0.005, 0.001], "2"
    return cfg


@pytest.fixture(scope="session")
def variable_rate_ecg_bundle(tmp_path_factory) -> Path:
    """A variable-rate 4×3-lead bundle with quality points 1, 2 (default) and 3."""
    from training.pipeline import train_and_export

    path, _ = train_and_export(tiny_variable_rate_config(), tmp_path_factory.mktemp("bundles") / "ecg-vr")
    return path
