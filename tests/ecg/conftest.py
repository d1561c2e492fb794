"""Fixtures of the ECG tests: the shared PhysioNet records and a tiny real-ECG bundle."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED

ECG_DATA = SHARED / "data" / "ecg"


@pytest.fixture(scope="session")
def ecg_data() -> Path:
    """``../shared/data/ecg`` (PhysioNet records; tests and benchmarks only)."""
    if not (ECG_DATA / "README.md").is_file():
        pytest.fail(f"shared ECG records missing at {ECG_DATA}")
    return ECG_DATA


def tiny_ecg_config(records, **changes):
    """4 nodes × 3 leads at 500 Hz, 1024-sample windows: a few seconds of training."""
    from training.presets import get_preset

    cfg = get_preset("ecg-12lead").replace(steps=40, batch_size=8, progress=False, threads=1, **changes)
    cfg.data.params = {**cfg.data.params, "records": [str(r) for r in records]}
    cfg.model.hidden = 16
    return cfg


@pytest.fixture(scope="session")
def ecg_bundle(tmp_path_factory, ecg_data) -> tuple[Path, dict]:
    """A 4×3-lead bundle trained briefly on the 12-lead 500 Hz shared records (PTB-XL, Georgia)."""
    from training.pipeline import train_and_export

    records = [ecg_data / "ptb-xl" / "cinc2021_format", ecg_data / "georgia-12lead"]
    return train_and_export(tiny_ecg_config(records), tmp_path_factory.mktemp("bundles") / "ecg")


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
