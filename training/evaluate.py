"""Evaluate a bundle through the real serving path, window by window.

ONNX Runtime encoder (edge) → rounding → static-table ANS → bytes → ANS decode →
joint decoder (torch). Rate is 8 × the bytes the coder wrote; the gap to the prior's
likelihood estimate (what the training loss saw, at rounded latents) is reported apart.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_encoder.encoder import EdgeEncoder
from fusion_decoder.runtime import JointDecoderRuntime
from ndsc import metrics
from ndsc.bundle import Bundle, load_bundle
from models.config import TrainConfig
from training.data import JointDataset, build_dataset


def dataset_for_bundle(bundle: Bundle) -> JointDataset:
    """Rebuild the data set (and its split) the bundle was trained on."""
    return build_dataset(TrainConfig.from_dict(bundle.training_config).data)


def table_bits(bundle: Bundle, source_index: int, symbols: np.ndarray, quality: str | None = None) -> float:
    """Ideal code length (bits) of symbols (M, L) under the bundle's integer tables (of point ``quality``)."""
    total = 0.0
    info = bundle.sources[source_index]
    point = info.quality(quality)
    for c, table in enumerate(point.tables if point else info.tables):
        freqs = np.asarray(table.freqs, dtype=np.float64)
        idx = table.indices(symbols[c])
        total += float(-np.log2(freqs[idx] / freqs.sum()).sum())
    return total


def evaluate_bundle(bundle_path: str | Path, windows: np.ndarray | None = None, split: str = "test",
                    max_windows: int | None = None, device: str | None = None,
                    peak: float | None = None, quality: str | None = None) -> dict[str, Any]:
    """Rate from bytes written and distortion of ``windows`` (n, N, C, *S) or the bundle's split.

    Returns a dict with per-source and total ``bits_per_sample`` (real), ``payload_bytes``,
    ``estimated_bits_per_sample`` (integer-table entropy of the same symbols), the gap,
    and distortion (MSE, RMSE, PSNR, PRD, PRDN) per source and overall; plus the
    reconstructions under ``x_hat`` and payloads under ``payloads``. ``quality``: the operating
    point of a variable-rate bundle every node uses (None: the default; recorded as ``quality``).
    """
    bundle = load_bundle(bundle_path)
    if windows is None:
        windows = getattr(dataset_for_bundle(bundle), split)
    if max_windows is not None:
        windows = windows[:max_windows]
    n_win, n_src = windows.shape[:2]
    encoders = [EdgeEncoder(bundle, i, quality=quality) for i in range(n_src)]
    runtime = JointDecoderRuntime(bundle, device=device)
    point = encoders[0].quality or None

    payloads: list[list[bytes]] = []
    est_bits = np.zeros(n_src)
    for w in range(n_win):
        row = []
        for i, enc in enumerate(encoders):
            symbols = enc.symbols(windows[w, i])
            est_bits[i] += table_bits(bundle, i, symbols, point)
            row.append(enc.coder.encode(symbols))
        payloads.append(row)
    qualities = [[point] * n_src for _ in range(n_win)]
    x_hat = np.concatenate([runtime.decode_batch(payloads[s:s + 256], qualities=qualities[s:s + 256])[0]
                            for s in range(0, n_win, 256)])

    samples = bundle.sources[0].samples_per_window * n_win
    bytes_per_source = [sum(len(row[i]) for row in payloads) for i in range(n_src)]
    per_source = []
    for i in range(n_src):
        d = metrics.distortion_report(windows[:, i], x_hat[:, i], peak)
        per_source.append({
            "name": bundle.sources[i].name,
            "payload_bytes": bytes_per_source[i],
            "bits_per_sample": metrics.bits_per_sample(bytes_per_source[i], samples),
            "estimated_bits_per_sample": est_bits[i] / samples,
            **d,
        })
    total_bytes = sum(bytes_per_source)
    result = {
        "bundle_id": bundle.bundle_id,
        "quality": point,
        "windows": n_win,
        "sources": per_source,
        "payload_bytes": total_bytes,
        "bits_per_sample_sum": sum(s["bits_per_sample"] for s in per_source),
        "bits_per_sample_mean": sum(s["bits_per_sample"] for s in per_source) / n_src,
        "estimated_bits_per_sample_sum": float(est_bits.sum() / samples),
        "mse_mean": float(np.mean([s["mse"] for s in per_source])),
        **{f"overall_{k}": v for k, v in metrics.distortion_report(windows, x_hat, peak).items()},
        "x_hat": x_hat,
        "payloads": payloads,
    }
    result["coding_gap_bits_per_sample_sum"] = result["bits_per_sample_sum"] - result["estimated_bits_per_sample_sum"]
    if bundle.sample_rate:
        seconds = n_win * bundle.sources[0].input_shape[-1] / bundle.sample_rate
        result["kbit_per_s"] = 8.0 * total_bytes / seconds / 1000.0
    return result


def training_estimate(model, windows: np.ndarray) -> float:
    """Sum over sources of the prior's bits/sample at rounded latents (float prior)."""
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(windows))  # variable rate: at the default point
        bits = -torch.log2(out["likelihoods"]).sum(dim=tuple(range(2, out["likelihoods"].dim())))
    return float(bits.mean(dim=0).sum() / np.prod(windows.shape[2:]))


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the bulky arrays, rounded for printing/JSON."""
    def clean(v):
        if isinstance(v, float):
            return v if math.isinf(v) else round(v, 6)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean({k: v for k, v in result.items() if k not in ("x_hat", "payloads")})
