"""The project's learned codec as study baselines: separate coding, joint β_MI = 0, joint with MI.

All three are :class:`models.codec.DistributedCodec` trained by :func:`training.train.train`
with the same encoders and priors; only the decoder (joint or one per source) and β_MI
differ. Bytes come from the codec's frozen static tables through ``ndsc.entropy.LatentCoder``.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from training.baselines.base import Baseline, register_baseline
from models.config import TrainConfig
from training.data import JointDataset

LN2 = math.log(2.0)


def _entropy_bits(symbols: np.ndarray) -> float:
    """Plug-in entropy (bits) of the empirical distribution of ``symbols`` (any shape)."""
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def plugin_mi_bits(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in I(A;B) in bits from paired integer symbols (1-D arrays of equal length)."""
    pairs = np.stack([a, b], axis=1)
    _, joint = np.unique(pairs, axis=0, return_counts=True)
    pj = joint / joint.sum()
    return _entropy_bits(a) + _entropy_bits(b) - float(-(pj * np.log2(pj)).sum())


@register_baseline("neural")
@register_baseline("separate", joint_decoder=False, beta_mi=0.0)
@register_baseline("joint-b0", beta_mi=0.0)
# NDIC-CAM (Mital et al. 2022): the same codec with global cross-attention fusion (models/decoders_cam.py)
@register_baseline("ndic-cam", model={"decoder": "cross-attention-cam"}, beta_mi=0.0)
class NeuralCodec(Baseline):
    """The distributed neural codec (encoder per source, learned prior, joint or separate decoder).

    Params: ``train`` (a :class:`TrainConfig` dict: the data set's base config), and any
    top-level TrainConfig field as an override (``lmbda``, ``beta_mi``, ``mi_estimator``,
    ``optimisation``, ``steps`` …) plus ``joint_decoder`` (False: separate coding).
    """

    uses_train_config = True
    version = 2  # 2: analysis adds the ONNX edge latency

    def __init__(self, **params: Any):
        super().__init__(**params)
        base = dict(params.get("train") or {})
        cfg = TrainConfig.from_dict(base) if base else TrainConfig()
        overrides = {k: v for k, v in params.items() if k not in ("train", "joint_decoder", "model")}
        model = dict(params.get("model") or {})
        if "joint_decoder" in params:
            model["joint_decoder"] = bool(params["joint_decoder"])
        self.cfg = cfg.replace(**overrides, model=model, progress=False)
        self.decoding = "joint" if self.cfg.model.joint_decoder else "separate"
        self.model = None
        self.result = None

    def fit(self, data: JointDataset) -> dict[str, Any]:
        from training.train import train

        self.result = train(self.cfg, dataset=data)
        self.model = self.result.model.eval()
        self.model.update()
        self._latent_shape = self.model.latent_shape()
        tail = self.result.history[-100:]
        return {"train_seconds": self.result.seconds, "device": self.result.device,
                "mi_critic_bits": float(np.mean([h["mi"] for h in tail])) / LN2 if tail else None,
                "mi_estimator": self.cfg.mi_estimator}

    def compress(self, windows: np.ndarray) -> list[list[bytes]]:
        return self.model.compress(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))

    def decompress(self, payloads: list[list[bytes]]) -> np.ndarray:
        return self.model.decompress(payloads, self._latent_shape).numpy()

    @torch.no_grad()
    def symbols(self, windows: np.ndarray) -> np.ndarray:
        """Integer latents (n, N, M, L·) of ``windows``."""
        y = self.model.analysis(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
        return torch.round(y).to(torch.int64).numpy()

    def analyse(self, windows: np.ndarray) -> dict[str, Any]:
        """The seed's bound R ≥ Σ I(X_i;Z_i) − β·I(Z_1;Z_2), both terms estimated on test data.

        The encoder is deterministic, so I(X_i;Z_i) = H(Z_i); it is estimated by the plug-in
        entropy of the test symbols per latent channel (summed over channels, per sample).
        I(Z_1;Z_2) per latent position is estimated two ways: the InfoNCE/MINE critic the
        training used (on training batches) and a plug-in estimate from the joint histogram
        of the two sources' symbols (channel 0, same position).
        """
        s = self.symbols(windows)  # (n, N, M, *L)
        n, n_src, m = s.shape[:3]
        samples = float(np.prod(windows.shape[2:]))
        positions = float(np.prod(s.shape[3:]))
        h = [sum(_entropy_bits(s[:, i, c]) for c in range(m)) * positions / samples for i in range(n_src)]
        mi_plugin = plugin_mi_bits(s[:, 0, 0].ravel(), s[:, 1, 0].ravel()) * positions / samples if n_src > 1 else 0.0
        out: dict[str, Any] = {"h_z_bits_per_sample": h, "h_z_sum": float(sum(h)),
                               "mi_plugin_bits_per_sample": mi_plugin, "beta_mi": self.cfg.beta_mi,
                               "bound_plugin": float(sum(h)) - self.cfg.beta_mi * mi_plugin}
        if m == 1 and len(s.shape) == 4 and windows.shape[2] == 1:
            out["encoder_map"] = scalar_encoder_map(self)
        out["edge_onnx_ms_per_window"] = edge_onnx_latency(self.model.g_a[0], windows[:8, 0])
        return out


def edge_onnx_latency(encoder: torch.nn.Module, windows: np.ndarray, repeats: int = 3) -> float:
    """Milliseconds per window of the source's encoder exported to ONNX, on one CPU thread.

    The analysis transform only (what the edge node runs before rounding and ANS), timed
    window by window with onnxruntime as ``edge_encoder.EdgeEncoder`` configures it.
    """
    import tempfile
    from pathlib import Path

    import onnxruntime as ort

    from training.export import export_encoder_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.onnx"
        export_encoder_onnx(encoder, tuple(windows.shape[1:]), path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        batch = np.ascontiguousarray(windows, dtype=np.float32)
        sess.run(None, {name: batch[:1]})  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            for w in batch:
                sess.run(None, {name: w[None]})
        return 1000.0 * (time.perf_counter() - start) / (repeats * len(batch))


def scalar_encoder_map(codec: NeuralCodec, lo: float = -4.0, hi: float = 4.0, points: int = 801) -> dict[str, Any]:
    """Symbol as a function of a scalar input, per source, and whether the map is many-to-one."""
    grid = np.linspace(lo, hi, points, dtype=np.float32)
    n_src = codec.model.n_sources
    # One window holding the whole grid, per source (pointwise encoders act per sample).
    x = np.tile(grid[None, None, None, :], (1, n_src, 1, 1))
    s = codec.symbols(x)[0, :, 0]  # (N, points)
    return {"x": grid.tolist(), "symbols": s.tolist(), "many_to_one": [many_to_one(row) for row in s]}


def many_to_one(symbols, min_run: int = 5) -> bool:
    """True if some symbol is produced on two or more disjoint input intervals (binning).

    Intervals shorter than ``min_run`` grid points are ignored, so a one-point wobble of a
    monotone map at a decision boundary is not mistaken for binning.
    """
    symbols = np.asarray(symbols)
    starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]])
    lengths = np.diff(np.r_[starts, len(symbols)])
    runs = [int(symbols[s]) for s, n in zip(starts, lengths) if n >= min_run]
    return len(runs) != len(set(runs))


def timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start
