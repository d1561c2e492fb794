"""Rate and distortion metrics on numpy arrays.

Rates are always computed from coded byte counts (bytes × 8), never from likelihoods.
"""

from __future__ import annotations

import numpy as np


def bits_per_sample(payload_bytes: int, samples: int) -> float:
    """Real rate: ``8 × payload_bytes / samples``."""
    if samples <= 0:
        raise ValueError("samples must be positive")
    return 8.0 * payload_bytes / samples


def mse(x: np.ndarray, x_hat: np.ndarray) -> float:
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    return float(np.mean((x - x_hat) ** 2))


def rmse(x: np.ndarray, x_hat: np.ndarray) -> float:
    return float(np.sqrt(mse(x, x_hat)))


def psnr(x: np.ndarray, x_hat: np.ndarray, peak: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB; ``peak`` defaults to the range of ``x``."""
    x = np.asarray(x, np.float64)
    if peak is None:
        peak = float(x.max() - x.min()) or 1.0
    err = mse(x, x_hat)
    return float("inf") if err == 0 else float(10 * np.log10(peak**2 / err))


def prd(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Percentage root-mean-square difference, 100·‖x−x̂‖/‖x‖ (signal as recorded)."""
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    denom = float(np.sum(x**2))
    return float("inf") if denom == 0 else float(100 * np.sqrt(np.sum((x - x_hat) ** 2) / denom))


def prdn(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Normalised PRD, 100·‖x−x̂‖/‖x−mean(x)‖ (mean removed per the last axis)."""
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    centred = x - x.mean(axis=-1, keepdims=True)
    denom = float(np.sum(centred**2))
    return float("inf") if denom == 0 else float(100 * np.sqrt(np.sum((x - x_hat) ** 2) / denom))


def snr_db(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Signal-to-noise ratio 10·log10(var(x)/mse) in dB."""
    err = mse(x, x_hat)
    return float("inf") if err == 0 else float(10 * np.log10(np.var(np.asarray(x, np.float64)) / err))


def distortion_report(x: np.ndarray, x_hat: np.ndarray, peak: float | None = None) -> dict[str, float]:
    """All distortion figures for one array pair."""
    return {
        "mse": mse(x, x_hat),
        "rmse": rmse(x, x_hat),
        "psnr_db": psnr(x, x_hat, peak),
        "prd_percent": prd(x, x_hat),
        "prdn_percent": prdn(x, x_hat),
    }
