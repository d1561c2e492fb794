"""Tiny data sets and a tiny study config for the study tests."""
from __future__ import annotations

import numpy as np
import pytest

from models.config import DataConfig
from training.data import JointDataset, build_dataset

TINY_TRAIN = {"model": {"encoder": "pointwise", "decoder": "pointwise", "latent_channels": 1, "hidden": 8,
                        "layers": 1}, "steps": 6, "batch_size": 2, "progress": False}


@pytest.fixture(scope="session")
def gauss() -> JointDataset:
    """Two Gaussian sources, ρ = 0.9, 20 windows of 512 samples."""
    return build_dataset(DataConfig(kind="gaussian", n_windows=20, params={"rho": 0.9, "samples": 512}))


@pytest.fixture(scope="session")
def ecg_synth() -> JointDataset:
    return build_dataset(DataConfig(kind="ecg-synth", n_windows=12,
                                    params={"group_size": 3, "samples": 256, "fs": 250.0}))


@pytest.fixture(scope="session")
def tiny_stereo() -> JointDataset:
    """Two 64×64 RGB views (right = left shifted by 2 px), smooth texture, values 0..255."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    base = gaussian_filter(rng.uniform(0, 255, size=(7, 3, 64, 72)), sigma=(0, 0, 2, 2))
    base = (255 * (base - base.min()) / (base.max() - base.min())).astype(np.float32)
    pair = np.stack([base[..., 2:66], base[..., 0:64]], axis=1)
    return JointDataset(train=pair[:4], val=pair[4:5], test=pair[5:], modality="stereo",
                        source_names=["left", "right"], channel_names=[["R", "G", "B"]] * 2,
                        sample_rate=None, edge_source="", info={"peak": 255.0})


def tiny_study(tmp_path, methods=None, folds=(0, 1)) -> dict:
    """A study config dict that runs in seconds."""
    return {
        "name": "tiny", "out": str(tmp_path / "report"), "cache": str(tmp_path / "cache"), "threads": 1,
        "datasets": [{
            "name": "g", "data": {"kind": "gaussian", "n_windows": 10, "params": {"rho": 0.9, "samples": 512}},
            "folds": list(folds), "anchor": "sq-separate", "matched": [0.1], "train": TINY_TRAIN,
            "methods": methods or [
                {"label": "sq-separate", "baseline": "sq-separate", "grid": {"step": [0.5, 1.0, 1.5]}},
                {"label": "sq", "baseline": "sq", "grid": {"step": [0.5, 1.0, 1.5]}},
                {"label": "joint β=0", "baseline": "joint-b0", "group": "beta", "grid": {"lmbda": [0.02, 0.2]}},
                {"label": "joint β=+0.1", "baseline": "neural", "group": "beta", "params": {"beta_mi": 0.1},
                 "grid": {"lmbda": [0.02, 0.2]}},
            ],
        }],
    }
