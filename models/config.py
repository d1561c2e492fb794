"""One typed config per experiment; saved in every checkpoint and bundle."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ndsc.binning import DEFAULT_CHECK_BITS


@dataclass
class DataConfig:
    kind: str = "gaussian"  # registered data set: gaussian | ecg-synth | (readers add more)
    n_windows: int = 4000  # windows generated (synthetic) before the 80/10/10 split
    params: dict[str, Any] = field(default_factory=dict)  # kind-specific, e.g. {"rho": 0.9, "samples": 64}
    split_seed: int = 0  # seed of the split (group-level for real data)
    fold: int | None = None  # 5-fold CV: which fold is the test fold (None: 80/10/10)


@dataclass
class ModelConfig:
    encoder: str = "pointwise"  # registered encoder arch (models/encoders.py)
    decoder: str = "pointwise"  # registered joint decoder arch (models/decoders.py)
    latent_channels: int = 1  # M: latent channels per source
    hidden: int = 64  # width of encoder and decoder hidden layers
    layers: int = 3  # hidden layers of pointwise nets
    stride: int = 4  # temporal downsampling of conv encoders (power of two)
    joint_decoder: bool = True  # False: separate decoders, the separate-coding baseline
    input_scale: float = 1.0  # windows are divided by this before the encoder, decoder output multiplied
    latent_gain: bool = False  # learnable per-channel log-gain on encoder outputs: reaches high-rate points in few steps
    # Variable rate: one λ per operating point (quality "1" = the first λ, the lowest rate, …). Each point
    # has its own learned per-channel quantiser gains and priors (static tables), one decoder serves all;
    # empty: a fixed-rate codec trained at TrainConfig.lmbda.
    quality_lambdas: list[float] = field(default_factory=list)
    default_quality: str | None = None  # the point a node uses when it names none (None: the middle one)
    gain_init: float = 2.4  # a point's quantiser gains start at input_scale · gain_init / sqrt(λ)
    # stereo-dct: refine each view with the other inside its quantisation cells when decoding
    # (models/side_information.py; no training, no rate)
    side_information: bool = False
    # stereo-dct: width of a learned refinement of each decoded view (models/view_fusion.py; 0: none),
    # trained after the codec with the codec frozen: with side_information it fuses the warped other
    # view in, without it is a post-filter of each view alone (the separate baseline's)
    refiner_hidden: int = 0
    refiner_blocks: int = 3  # its residual blocks at half resolution ...
    refiner_coarse_blocks: int = 2  # ... and at quarter resolution (a wider view: occlusions, exposure)


@dataclass
class BinningConfig:
    """Syndrome coding (binning) of sources, frozen at export (training/syndrome_export.py, docs/binning.md)."""

    # [[source, side source], …]: each listed source is syndrome-coded, its decoder LLRs from a table
    # p(index | side symbol) fitted on the training windows; empty: every source direct (no binning)
    syndrome: list[list[int]] = field(default_factory=list)
    smoothing: float = 1.0  # pseudo-count of each table row's prior (the marginal): unseen side symbols get it
    raw_above: float = 0.8  # a bit plane with H(plane | lower planes, side) above this (bits/bit) is sent raw
    initial_factor: float = 1.0  # a syndrome plane's first block is this × n·H bits (feedback adds the rest)
    # at least this many bits in a syndrome plane's first block: BP stops at any word that satisfies the checks
    # received, and with a handful of checks a wrong word often does (nothing downstream would notice)
    min_initial_bits: int = 32
    # bits of each syndrome plane's CRC (0, 16 or 32; docs/bitstream.md §7): the decoder accepts a BP word only
    # when it matches, so a wrong word asks for more bits instead of reaching the output
    check_bits: int = DEFAULT_CHECK_BITS
    step_bits: int = 32  # accumulated-syndrome bits per feedback request
    max_requests: int = 16  # requests per window before the direct fallback
    bp_iterations: int = 100  # belief-propagation iterations per decoding attempt
    check_degree: int = 3  # checks per bit of the frozen LDPC base matrix
    code_seed: int = 0  # seed of that matrix (the bundle stores its rows)


@dataclass
class TrainConfig:
    """Everything that defines a training run. Loss: Σ D_i + λ·Σ R_i − β_MI·Σ_{i<j} I(Z_i;Z_j)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lmbda: float = 0.02  # λ: weight of the rate (bits per sample, summed over sources)
    beta_mi: float = 0.0  # β_MI: >0 maximises MI between latents, <0 penalises redundancy
    mi_estimator: str = "infonce"  # infonce | mine
    mi_pairs: str = "positions"  # positions: one pair per latent position; windows: one per window
    mi_monitor: bool = True  # with β_MI = 0, still train the critic to report Î(Z_i;Z_j) (costs a step's time)
    optimisation: str = "alternating"  # alternating (enc step, dec frozen / dec step, enc frozen) | joint
    alt_encoder_steps: int = 1  # encoder steps per alternating round
    alt_decoder_steps: int = 1  # decoder steps per alternating round
    decoder_quantisation: str = "ste"  # ste: decoder sees rounded latents (straight-through); noise: uniform noise
    source_dropout: float = 0.0  # probability a source is dropped per window (decoder learns to estimate it)
    # none: MSE per source in model units; lead-variance: each channel's MSE divided by its variance over the
    # training windows (the loss then tracks the mean over leads of PRDN², so small leads are not sacrificed)
    distortion_weighting: str = "none"
    # > 0: channels the other channels explain to within this relative RMS residual start as derived
    # (decoder rebuilds them by regression, their own gains start at ~0 bits; training/lead_derivation.py)
    derived_channel_tolerance: float = 0.0
    amplitude_jitter: float = 0.0  # augmentation: every window scaled by exp(σ·N(0, 1)) (all leads alike)
    # lapped codecs: analysis and synthesis stay the perfect-reconstruction transform they start as (MLT,
    # plus the derived-channel regression); gains, priors and any fusion network still learn. A transform
    # shared by every quality point otherwise drifts away from invertibility, which floors the finest point.
    freeze_transform: bool = False
    steps: int = 3000  # optimisation steps (one alternating round counts as one step)
    batch_size: int = 128  # windows per step; also the K of InfoNCE in "windows" mode
    lr: float = 3e-3  # Adam learning rate for encoders, priors and decoder
    critic_lr: float = 1e-3  # Adam learning rate of the MI critic
    # Adam learning rate of the priors (None: lr); higher lets them fit latents of very different
    # scales (an orthonormal transform's DC against its fine detail) within a short run
    prior_lr: float | None = None
    lr_decay_at: float = 0.75  # fraction of steps after which the lr drops ×0.1
    # model.refiner_hidden > 0: Adam steps of the learned view fusion, trained after export with the codec
    # frozen on the training scenes' real decodes (training/view_fusion.py)
    refiner_steps: int = 0
    seed: int = 0  # torch / numpy seed
    threads: int = 0  # torch intra-op threads (0: torch default)
    # auto: CUDA when torch.cuda.is_available(), else CPU | cpu | cuda / cuda:N (without CUDA: CPU, with a
    # logged warning). The trained model is returned on the CPU whatever trained it (models/device.py).
    device: str = "auto"
    progress: bool = True  # tqdm progress bar with the loss terms
    binning: BinningConfig = field(default_factory=BinningConfig)  # syndrome-coded sources (export)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not self.binning.syndrome:  # written only when set, so direct-only configs (and bundle ids) stay as they were
            del out["binning"]
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "TrainConfig":
        obj = dict(obj)
        data = DataConfig(**obj.pop("data", {}))
        model = ModelConfig(**obj.pop("model", {}))
        binning = BinningConfig(**obj.pop("binning", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(data=data, model=model, binning=binning, **obj)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes: Any) -> "TrainConfig":
        """Copy with top-level changes; ``data``/``model``/``binning`` may be dicts of field changes."""
        new = TrainConfig.from_dict(self.to_dict())
        for key, value in changes.items():
            if key in ("data", "model", "binning") and isinstance(value, dict):
                setattr(new, key, dataclasses.replace(getattr(new, key), **value))
            else:
                setattr(new, key, value)
        return new
