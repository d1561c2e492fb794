"""Named configs for the CLI (``ndsc train --preset NAME``)."""
from __future__ import annotations

from models.config import DataConfig, ModelConfig, TrainConfig


def _gaussian_quick() -> TrainConfig:
    # Two sources, rho = 0.9, scalar latent per sample: the DESIGN.md theory setting.
    return TrainConfig(
        data=DataConfig(kind="gaussian", n_windows=2000, params={"n": 2, "rho": 0.9, "samples": 64}),
        model=ModelConfig(encoder="pointwise", decoder="pointwise", latent_channels=1, hidden=32, layers=2,
                          latent_gain=True),
        lmbda=0.02, steps=600, batch_size=32,
    )


def _gaussian_syndrome() -> TrainConfig:
    # gaussian-quick with binning: source 1 syndrome-coded given source 0 (its table p(q1 | q0) fitted on the
    # training symbols at export); 512 samples per window = the LDPC block (longer blocks: fewer wrong words)
    cfg = _gaussian_quick()
    cfg.data.n_windows, cfg.data.params["samples"] = 400, 512
    cfg.binning.syndrome = [[1, 0]]
    return cfg


def _ecg_synth_quick() -> TrainConfig:
    # Four nodes of three synthetic leads each, conv encoders with stride 4.
    return TrainConfig(
        data=DataConfig(kind="ecg-synth", n_windows=1500,
                        params={"group_size": 3, "fs": 250.0, "samples": 256}),
        model=ModelConfig(encoder="conv1d", decoder="conv1d", latent_channels=4, hidden=32, stride=4,
                          input_scale=0.5),
        lmbda=0.002, steps=600, batch_size=32, mi_pairs="windows",
    )


#: λ of the stereo quality points "1" … "5" (lowest rate first), in pixel² per bit/dimension: about
#: CompressAI's bmshj2018 λ 0.0063 … 0.1 (λ_here = 3 / λ_CompressAI, which counts bits per pixel)
STEREO_QUALITY_LAMBDAS = [480.0, 240.0, 120.0, 60.0, 30.0]


def _stereo_small() -> TrainConfig:
    # The shipped stereo codec (scripts/build_stereo_bundle.py), sized for ≤ 60 min on 2 CPU cores:
    # * per camera a learned, critically sampled 8×8 block transform (block-dct: orthonormal colour DCT
    #   at the start), per-channel quantiser gains and factorised priors per quality point;
    # * a joint decoder (stereo-dct): the learned inverse transform plus a nonlinear residual shared by
    #   both views — sub-pixel convolutions (no checkerboard) with row attention across views at 1/8
    #   and 1/4; --separate drops the attention (same encoders, same layers otherwise);
    # * five quality points in one bundle (one decoder serves all);
    # * 64×192 aligned crops: wide enough that a point's match in the other view is in the crop;
    # * β_MI = 0: the MI term bought nothing on stereo (DESIGN.md), so joint and separate differ
    #   only in the decoder. Needs data.params.root;
    # * side information at decoding (models/side_information.py): each view refined with the other,
    #   warped by a block-matched disparity, inside its own quantisation cells (no rate), corrected by a
    #   learned view fusion (refiner_hidden, models/view_fusion.py) trained after the codec, with the codec
    #   frozen (refiner_steps); --separate keeps the same network as a post-filter of each view alone.
    return TrainConfig(
        data=DataConfig(kind="stereo", n_windows=3000, params={"crop": 64, "crop_width": 192}),
        model=ModelConfig(encoder="block-dct", decoder="stereo-dct", latent_channels=192, hidden=64,
                          stride=8, input_scale=255.0, quality_lambdas=list(STEREO_QUALITY_LAMBDAS),
                          default_quality="3", gain_init=0.5, side_information=True, refiner_hidden=32),
        lmbda=0.0, beta_mi=0.0, mi_monitor=False, optimisation="joint", steps=1200, batch_size=8, lr=1e-3,
        prior_lr=1e-2, mi_pairs="positions", threads=1, refiner_steps=2500,
    )


def _stereo_quick() -> TrainConfig:
    # A smoke-test size of stereo-small (tests and `ndsc stereo-train` demos): seconds, not quality.
    cfg = _stereo_small()
    cfg.data.n_windows, cfg.steps, cfg.refiner_steps = 64, 20, 4
    cfg.data.params = {"crop": 64}
    cfg.model.stride, cfg.model.latent_channels, cfg.model.hidden = 4, 48, 16
    return cfg


#: λ of the ECG quality points "1" … "6" (lowest rate first, ×3 apart): about PRDN 15 % down to 2 % (mean of
#: leads) on unseen patients
ECG_QUALITY_LAMBDAS = [1.3e-2, 4.4e-3, 1.5e-3, 5e-4, 1.7e-4, 6e-5]


def _ecg(group_size: int) -> TrainConfig:
    # Real 12-lead ECG at 500 Hz in 1024-sample (2.05 s) windows, one node per group of `group_size`
    # leads. Trains on the pydicom record unless data.params["records"] names record folders
    # (scripts/build_ecg_bundle.py uses the PhysioNet 12-lead records of ../shared/data).
    # The codec (benchmarks/ecg.py measures it against db4-wavelet + zstd, on 5 patient folds):
    # * ecg-lapped: a critically sampled lapped transform per node (the MLT, 16 subbands per lead): no latent
    #   bottleneck, and kept fixed (freeze_transform): a learned pair shared by six points drifted away from
    #   perfect reconstruction and floored the finest point on unseen patients (docs/ecg.md);
    # * six quality points in one bundle (learned per-point, per-subband quantiser gains + static tables);
    # * a joint decoder whose synthesis sees every node: a lead the others determine (aVR, aVL, aVF from
    #   I and II) costs its node nothing; the regression is found in the data (derived_channel_tolerance,
    #   training/lead_derivation.py). No fusion network (hidden=0): blind to the quantiser step, it
    #   "corrected" exact coefficients and cost every point on held-out patients;
    # * distortion weighted by 1 / lead variance, so small leads (V1, aVL) are not sacrificed to large ones;
    # * amplitude jitter and a 256-sample training hop (time shifts) as physiology-preserving augmentation.
    stride = 16
    return TrainConfig(
        data=DataConfig(kind="ecg", params={"records": ["pydicom"], "group_size": group_size, "fs": 500.0,
                                            "samples": 1024, "hop": 256}),
        model=ModelConfig(encoder="ecg-lapped", decoder="ecg-lapped", latent_channels=group_size * stride,
                          hidden=0, stride=stride, input_scale=1.0, quality_lambdas=list(ECG_QUALITY_LAMBDAS),
                          default_quality="5"),
        lmbda=0.0, steps=2500, batch_size=32, lr=3e-3, optimisation="joint", mi_pairs="positions", mi_monitor=False,
        source_dropout=0.02, distortion_weighting="lead-variance", amplitude_jitter=0.2, lr_decay_at=0.8,
        derived_channel_tolerance=0.02, freeze_transform=True,
    )


PRESETS = {
    "gaussian-quick": _gaussian_quick,
    "gaussian-syndrome": _gaussian_syndrome,
    "ecg-synth-quick": _ecg_synth_quick,
    "stereo-small": _stereo_small,
    "stereo-quick": _stereo_quick,
    "ecg-12lead": lambda: _ecg(3),  # 4 nodes × 3 leads: the shipped bundle
    "ecg-12x1": lambda: _ecg(1),
    "ecg-4x3": lambda: _ecg(3),
    "ecg-2x6": lambda: _ecg(6),
}


def separate_baseline(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` as the separate-coding baseline, in place: the same encoders and synthesis, but no
    cross-view fusion, no side information at decoding, and β_MI = 0 (nothing could use shared
    information). A learned refiner (``refiner_hidden``) stays, as a post-filter of each view alone:
    the two then differ only in what the second view adds."""
    cfg.model.joint_decoder, cfg.model.side_information, cfg.beta_mi = False, False, 0.0
    return cfg


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()
