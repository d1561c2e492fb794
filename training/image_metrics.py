"""Image rate and quality metrics: bpp and BPD from real bytes, PSNR, MS-SSIM, FID, BD-rate.

Rates take byte counts (what a coder wrote), never likelihoods:
bpp = 8·bytes / (H·W) per view, BPD (bits per dimension) = 8·bytes / (H·W·C).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import linalg
from scipy.interpolate import PchipInterpolator

PEAK = 255.0


def bpp(payload_bytes: int, height: int, width: int) -> float:
    """Bits per pixel from coded bytes."""
    return 8.0 * payload_bytes / (height * width)


def bpd(payload_bytes: int, height: int, width: int, channels: int = 3) -> float:
    """Bits per dimension, bits / (H·W·C), from coded bytes."""
    return 8.0 * payload_bytes / (height * width * channels)


def psnr(x: np.ndarray, x_hat: np.ndarray, peak: float = PEAK) -> float:
    """PSNR in dB of two images in 0..peak (any shape)."""
    err = float(np.mean((np.asarray(x, np.float64) - np.asarray(x_hat, np.float64)) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(peak ** 2 / err))


def ms_ssim(x: np.ndarray, x_hat: np.ndarray, peak: float = PEAK) -> tuple[float, int]:
    """MS-SSIM (pytorch-msssim, five scales) of two (C, H, W) images; returns (value, window size).

    The standard 11-pixel window needs a shorter side above 160 pixels; smaller images
    use the largest odd window that fits the four downsamplings (reported beside the value).
    """
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    side = min(x.shape[-2:])
    win = min(11, (side - 1) // 16)
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"MS-SSIM needs a shorter side of at least 49 pixels, got {side}")
    a = torch.from_numpy(np.asarray(x, np.float32))[None]
    b = torch.from_numpy(np.asarray(x_hat, np.float32))[None]
    return float(_ms_ssim(a, b, data_range=peak, win_size=win)), win


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2·(Σ1·Σ2)^½), the quantity FID reports on Inception features.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Near-singular products (few samples): regularise as pytorch-fid does.
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(real: list[np.ndarray], fake: list[np.ndarray], weights: str | Path | None) -> dict:
    """FID between two image sets (C, H, W) in 0..255, with Inception weights from a local file.

    Uses torch-fidelity's InceptionV3 feature extractor (the TF-FID-compatible network)
    with ``feature_extractor_weights_path``; nothing is downloaded. Returns
    ``{"fid": value, "images": n}`` or ``{"fid": None, "reason": ...}`` when the weights
    file or torch-fidelity is absent. With a handful of images the covariance is
    rank-deficient and the figure is indicative only.
    """
    if not weights:
        return {"fid": None, "reason": "FID not computed: no Inception weights path given (--inception-weights)"}
    if not Path(weights).is_file():
        return {"fid": None, "reason": f"FID not computed: no Inception weights at {weights}"}
    try:
        import torch
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ModuleNotFoundError:
        return {"fid": None, "reason": "FID not computed: torch-fidelity is not installed (pip install torch-fidelity)"}
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    net.eval()

    def features(images: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([
                net(torch.from_numpy(np.clip(np.rint(im), 0, 255).astype(np.uint8))[None])[0].numpy()
                for im in images
            ]).astype(np.float64)

    fr, ff = features(real), features(fake)
    stats = lambda f: (f.mean(0), np.cov(f, rowvar=False))
    return {"fid": frechet_distance(*stats(fr), *stats(ff)), "images": len(real)}


def bd_rate(rate_a, psnr_a, rate_b, psnr_b, lo: float | None = None, hi: float | None = None) -> float:
    """Bjøntegaard delta rate of curve B against anchor A, in percent (negative: B saves).

    log-rate is interpolated as a monotone (PCHIP) function of PSNR and averaged over
    [lo, hi] (default: the PSNR range both curves cover). Needs two points per curve.

    Raises:
        ValueError: fewer than two points, or no overlap in [lo, hi].
    """
    curves = []
    for r, p in ((rate_a, psnr_a), (rate_b, psnr_b)):
        r, p = np.asarray(r, float), np.asarray(p, float)
        order = np.argsort(p)
        r, p = r[order], p[order]
        keep = np.concatenate([[True], np.diff(p) > 0])
        if keep.sum() < 2:
            raise ValueError("BD-rate needs at least two distinct points per curve")
        curves.append((p[keep], np.log(r[keep])))
    low = max(c[0][0] for c in curves) if lo is None else max(lo, *(c[0][0] for c in curves))
    high = min(c[0][-1] for c in curves) if hi is None else min(hi, *(c[0][-1] for c in curves))
    if high <= low:
        raise ValueError(f"the curves do not overlap in PSNR (common range {low:.2f}..{high:.2f} dB)")
    grid = np.linspace(low, high, 200)
    mean_log = [np.trapezoid(PchipInterpolator(p, lr)(grid), grid) / (high - low) for p, lr in curves]
    return float((np.exp(mean_log[1] - mean_log[0]) - 1) * 100)
