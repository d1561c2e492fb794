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


#: MS-SSIM scale weights (Wang, Simoncelli & Bovik 2003), finest scale first
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_filter_valid(x: np.ndarray, win: int, sigma: float = 1.5) -> np.ndarray:
    """Separable Gaussian filter of (C, H, W) over H and W, 'valid' borders (no padding)."""
    g = np.exp(-((np.arange(win) - win // 2) ** 2) / (2 * sigma**2))
    g /= g.sum()
    x = np.lib.stride_tricks.sliding_window_view(x, win, axis=-1) @ g  # (C, H, W - win + 1)
    return np.lib.stride_tricks.sliding_window_view(x, win, axis=-2) @ g  # (C, H - win + 1, W - win + 1)


def _ssim_and_cs(x: np.ndarray, y: np.ndarray, win: int, peak: float) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: mean SSIM and mean contrast-structure term."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_x, mu_y = _gaussian_filter_valid(x, win), _gaussian_filter_valid(y, win)
    var_x = _gaussian_filter_valid(x * x, win) - mu_x**2
    var_y = _gaussian_filter_valid(y * y, win) - mu_y**2
    cov = _gaussian_filter_valid(x * y, win) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    ssim = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim.mean(axis=(1, 2)), cs.mean(axis=(1, 2))


def _halve(x: np.ndarray) -> np.ndarray:
    """2×2 average pooling of (C, H, W), an odd side zero-padded by one on both ends (as pytorch-msssim)."""
    ph, pw = x.shape[1] % 2, x.shape[2] % 2
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


def ms_ssim(x: np.ndarray, x_hat: np.ndarray, peak: float = 255.0, win: int = 11) -> float:
    """MS-SSIM of two (C, H, W) images in 0..peak: five scales, an 11-pixel Gaussian window (σ 1.5).

    numpy only (no torch), so any process can report it; the same definition as pytorch-msssim,
    which ``training.image_metrics`` uses (a test checks the two agree). The shorter side must
    exceed (win − 1)·16 pixels (160 for the standard window).
    """
    x, y = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    if min(x.shape[-2:]) <= (win - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        raise ValueError(
            f"MS-SSIM with a {win}-pixel window needs a shorter side above "
            f"{(win - 1) * 16} pixels, got {min(x.shape[-2:])}"
        )
    factors = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_and_cs(x, y, win, peak)
        factors.append(np.maximum(cs if scale < len(MS_SSIM_WEIGHTS) - 1 else ssim, 0.0))
        x, y = _halve(x), _halve(y)
    per_channel = np.prod(np.stack(factors) ** np.asarray(MS_SSIM_WEIGHTS)[:, None], axis=0)
    return float(per_channel.mean())
