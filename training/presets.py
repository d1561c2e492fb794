"""Named configs for the CLI (``ndsc train --preset NAME``)."""
from __future__ import annotations

from training.config import DataConfig, ModelConfig, TrainConfig


def _gaussian_quick() -> TrainConfig:
    # Two sources, rho = 0.9, scalar latent per sample: the DESIGN.md theory setting.
    return TrainConfig(
        data=DataConfig(kind="gaussian", n_windows=2000, params={"n": 2, "rho": 0.9, "samples": 64}),
        model=ModelConfig(encoder="pointwise", decoder="pointwise", latent_channels=1, hidden=32, layers=2,
                          latent_gain=True),
        lmbda=0.02, steps=600, batch_size=32,
    )


def _ecg_synth_quick() -> TrainConfig:
    # Four nodes of three synthetic leads each, conv encoders with stride 4.
    return TrainConfig(
        data=DataConfig(kind="ecg-synth", n_windows=1500,
                        params={"group_size": 3, "fs": 250.0, "samples": 256}),
        model=ModelConfig(encoder="conv1d", decoder="conv1d", latent_channels=4, hidden=32, stride=4,
                          input_scale=0.5),
        lmbda=0.002, steps=600, batch_size=32, mi_pairs="windows",
    )


def _stereo_small() -> TrainConfig:
    # Two cameras, GDN conv encoders (stride 16), row-attention joint decoder; sized for a
    # CPU: 64×64 aligned crops, joint optimisation (one forward per step). Needs data.params.root.
    return TrainConfig(
        data=DataConfig(kind="stereo", n_windows=1200, params={"crop": 64}),
        model=ModelConfig(encoder="conv2d-gdn", decoder="stereo-attention", latent_channels=48, hidden=48,
                          stride=16, input_scale=255.0),
        lmbda=500.0, beta_mi=1.0, optimisation="joint", steps=600, batch_size=8, lr=1e-3, mi_pairs="positions",
    )


def _stereo_quick() -> TrainConfig:
    # A smoke-test size of stereo-small (tests and `ndsc stereo-train` demos): seconds, not quality.
    cfg = _stereo_small()
    cfg.data.n_windows, cfg.steps = 64, 20
    cfg.model.latent_channels, cfg.model.hidden = 8, 16
    return cfg


def _ecg(group_size: int) -> TrainConfig:
    # Real 12-lead ECG at 500 Hz in 1024-sample (2.05 s) windows, one node per group of
    # `group_size` leads. Trains on the pydicom record unless data.params["records"] names
    # record folders (scripts/build_ecg_bundle.py uses the PhysioNet records).
    # lr 1e-2 with joint optimisation: a few hundred steps on 2 CPU cores reach a usable codec.
    # input_scale 0.1 mV: latents quantised finer than at 0.5 (about 0.45 instead of 0.25
    # bits/sample/lead, PRDN about 20 instead of 28 % after 400 steps; benchmarks/ecg.py).
    # ecg-joint (width 32 for all nodes) beat ecg-joint-wide (32 per node) after 400 steps.
    return TrainConfig(
        data=DataConfig(kind="ecg", params={"records": ["pydicom"], "group_size": group_size, "fs": 500.0,
                                            "samples": 1024}),
        model=ModelConfig(encoder="ecg-conv", decoder="ecg-joint", latent_channels=8, hidden=32, stride=16,
                          input_scale=0.1),
        lmbda=0.0005, steps=600, batch_size=16, lr=1e-2, optimisation="joint", mi_pairs="positions",
        source_dropout=0.05,
    )


PRESETS = {
    "gaussian-quick": _gaussian_quick,
    "ecg-synth-quick": _ecg_synth_quick,
    "stereo-small": _stereo_small,
    "stereo-quick": _stereo_quick,
    "ecg-12lead": lambda: _ecg(3),  # 4 nodes × 3 leads: the shipped bundle
    "ecg-12x1": lambda: _ecg(1),
    "ecg-4x3": lambda: _ecg(3),
    "ecg-2x6": lambda: _ecg(6),
}


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()
