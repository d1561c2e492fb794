"""ECG figures from real bytes: bits/sample/lead, kbit/s, RMSE (µV), PRD, PRDN per lead,
and lossless references (FLAC, zstd) of the same int16 samples.

Lossless references code the samples as int16 at ``gain`` adu/mV (1000: 1 µV, the
resolution PTB-XL and the Challenge-2021 records are stored at), lead by lead, each lead
as one continuous stream (so their header costs are amortised over the whole set).
"""
from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from ndsc import metrics
from ndsc.sources.ecg import EcgRecord, read_record

#: adu per mV of the int16 representation (1 µV per step)
INT16_GAIN = 1000.0


def record_windows(record: EcgRecord | str, leads: list[str], group_size: int, fs: float,
                   samples: int) -> np.ndarray:
    """Non-overlapping windows (n, N, C, T) of one record, leads grouped like a bundle's nodes."""
    rec = read_record(record) if isinstance(record, str) else record
    rec = rec.select(leads).resample(fs)
    w = rec.windows(samples)
    w = w[np.isfinite(w).all(axis=(1, 2))]
    n = len(leads) // group_size
    return w.reshape(len(w), n, group_size, samples)


def to_leads(windows: np.ndarray) -> np.ndarray:
    """(n, N, C, T) → (N·C, n·T): each lead as one continuous signal."""
    n, s, c, t = windows.shape
    return windows.transpose(1, 2, 0, 3).reshape(s * c, n * t)


def to_int16(x_mv: np.ndarray, gain: float = INT16_GAIN) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x_mv, np.float64) * gain), -32768, 32767).astype(np.int16)


def flac_bits(leads_int16: np.ndarray, fs: float) -> tuple[int, float]:
    """Total FLAC bits of each lead coded as its own mono stream, and encode seconds."""
    import soundfile as sf

    total, start = 0, time.perf_counter()
    for row in leads_int16:
        buf = io.BytesIO()
        sf.write(buf, row, int(fs), format="FLAC", subtype="PCM_16")
        total += 8 * len(buf.getvalue())
    return total, time.perf_counter() - start


def zstd_bits(leads_int16: np.ndarray, level: int = 19) -> int:
    """Total zstd bits of each lead's first differences (int16), coded lead by lead."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=level)
    total = 0
    for row in leads_int16:
        delta = np.diff(row.astype(np.int32), prepend=0).astype("<i2")
        total += 8 * len(cctx.compress(delta.tobytes()))
    return total


def lossless_reference(windows: np.ndarray, fs: float) -> dict[str, float]:
    """bits/sample/lead of FLAC and zstd on the int16 samples of ``windows`` (n, N, C, T)."""
    leads = to_int16(to_leads(windows))
    count = leads.size
    flac, seconds = flac_bits(leads, fs)
    return {"flac_bits_per_sample": flac / count, "zstd_bits_per_sample": zstd_bits(leads) / count,
            "flac_encode_x_realtime": (leads.shape[1] / fs) / max(seconds, 1e-9),
            "raw_bits_per_sample": 16.0}


def ecg_report(result: dict[str, Any], windows: np.ndarray, lead_names: list[str], fs: float) -> dict[str, Any]:
    """ECG figures from an :func:`training.evaluate.evaluate_bundle` result on ``windows``.

    Rate: 8 × payload bytes / (windows × T) per lead. PRD/PRDN on the signal as recorded
    (no filtering; PRDN removes each window's mean in the denominator only), per lead
    and over all leads.
    """
    x_hat = result["x_hat"]
    n, s, c, t = windows.shape
    samples = n * s * c * t
    seconds = n * t / fs
    x, y = to_leads(windows), to_leads(x_hat)
    per_lead = []
    for k, name in enumerate(lead_names):
        xs, ys = windows.reshape(n, s * c, t)[:, k], x_hat.reshape(n, s * c, t)[:, k]
        per_lead.append({"lead": name, "rmse_uv": 1000 * metrics.rmse(xs, ys), "prd_percent": metrics.prd(xs, ys),
                         "prdn_percent": metrics.prdn(xs, ys)})
    per_node = [{"node": src["name"], "kbit_per_s": 8 * src["payload_bytes"] / seconds / 1000,
                 "raw_kbit_per_s": 16 * c * fs / 1000} for src in result["sources"]]
    return {
        "windows": n, "seconds": seconds, "payload_bytes": result["payload_bytes"],
        "bits_per_sample_per_lead": 8 * result["payload_bytes"] / samples,
        "kbit_per_s": 8 * result["payload_bytes"] / seconds / 1000,
        "raw_kbit_per_s": 16 * s * c * fs / 1000,
        "rmse_uv": 1000 * metrics.rmse(x, y),
        "prd_percent": metrics.prd(windows, x_hat),
        "prdn_percent": metrics.prdn(windows, x_hat),
        "prdn_mean_of_leads_percent": float(np.mean([p["prdn_percent"] for p in per_lead])),
        "prdn_worst_lead_percent": float(max(p["prdn_percent"] for p in per_lead)),
        "per_lead": per_lead, "per_node": per_node,
    }
