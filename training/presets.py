"""Named configs for the CLI (``ndsc train --preset NAME``)."""
from __future__ import annotations

from training.config import DataConfig, ModelConfig, TrainConfig


def _gaussian_quick() -> TrainConfig:
    # Two sources, rho = 0.9, scalar latent per sample: the DESIGN.md theory setting.
    return TrainConfig(
        data=DataConfig(kind="gaussian", n_windows=2000, params={"n": 2, "rho": 0.9, "samples": 64}),
        model=ModelConfig(encoder="pointwise", decoder="pointwise", latent_channels=1, hidden=32, layers=2),
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


PRESETS = {
    "gaussian-quick": _gaussian_quick,
    "ecg-synth-quick": _ecg_synth_quick,
}


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()
