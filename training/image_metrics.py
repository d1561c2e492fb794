"""Image rate and quality metrics: bpp and BPD from real bytes, PSNR, MS-SSIM, FID.

BD-rate is :func:`training.study.bdrate.bd_rate` for every modality.

Rates take byte counts (what a coder wrote), never likelihoods:
bpp = 8·bytes / (H·W) per view, BPD (bits per dimension) = 8·bytes / (H·W·C).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from scipy import linalg

from ndsc import metrics

PEAK = 255.0


def bpp(payload_bytes: int, height: int, width: int) -> float:
    """Bits per pixel from coded bytes."""
    return 8.0 * payload_bytes / (height * width)


def bpd(payload_bytes: int, height: int, width: int, channels: int = 3) -> float:
    """Bits per dimension, bits / (H·W·C), from coded bytes."""
    return 8.0 * payload_bytes / (height * width * channels)


#: PSNR in dB of two images in 0..255 (any shape): :func:`ndsc.metrics.psnr` with the 8-bit peak
psnr = partial(metrics.psnr, peak=PEAK)


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


#: Environment variable ``ndsc stereo-eval`` reads when ``--inception-weights`` is not given.
INCEPTION_WEIGHTS_ENV = "NDSC_INCEPTION_WEIGHTS"


def frechet_distance_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples, n ≥ 2 each).

    With fewer samples than dimensions (a few images against Inception's 2048 features)
    each Σ = AᵀA/(n−1) (A: centred rows) is low-rank, and Tr((Σ1·Σ2)^½) is exactly the
    nuclear norm of A1·A2ᵀ / √((n1−1)(n2−1)): the nonzero eigenvalues of Σ1·Σ2 are the
    squared singular values of that n1×n2 matrix. This replaces a 2048×2048 ``sqrtm``
    (about a minute on one core, and ill-conditioned on singular products) with a small SVD.
    Otherwise it is :func:`frechet_distance` of the fitted statistics.
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    (n1, d), (n2, _) = f1.shape, f2.shape
    if n1 < 2 or n2 < 2:
        raise ValueError(f"a Fréchet distance needs at least two samples per set, got {n1} and {n2}")
    if min(n1, n2) >= d:
        stats = lambda f: (f.mean(0), np.cov(f, rowvar=False))
        return frechet_distance(*stats(f1), *stats(f2))
    a1, a2 = f1 - f1.mean(0), f2 - f2.mean(0)
    diff = f1.mean(0) - f2.mean(0)
    trace_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    return float(diff @ diff + (a1 ** 2).sum() / (n1 - 1) + (a2 ** 2).sum() / (n2 - 1) - 2 * trace_sqrt)


def _inception_v3_class():
    """torch-fidelity's ``FeatureExtractorInceptionV3`` class (the TF-FID-compatible network).

    ``torch_fidelity/__init__`` imports torchvision for its other extractors and data sets,
    but PyPI's Linux torchvision wheels are CUDA builds whose C ops cannot load beside the
    CPU torch build, and importing torchvision then raises. The InceptionV3 module needs
    only torch (and three torch-only sibling modules), so when the package import fails we
    import that module under a bare ``torch_fidelity`` package that skips the ``__init__``,
    and remove the bare package again so a later plain import still runs the real one.

    Raises:
        ModuleNotFoundError: torch-fidelity is not installed.
    """
    import importlib
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None:
        raise ModuleNotFoundError("torch-fidelity is not installed", name="torch_fidelity")
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        return FeatureExtractorInceptionV3
    except (ImportError, RuntimeError):  # torchvision absent, or present but its ops do not load
        pass
    bare = types.ModuleType("torch_fidelity")
    bare.__path__ = list(spec.submodule_search_locations)
    previous = sys.modules.get("torch_fidelity")
    sys.modules["torch_fidelity"] = bare
    try:
        return importlib.import_module("torch_fidelity.feature_extractor_inceptionv3").FeatureExtractorInceptionV3
    finally:
        if previous is None:
            sys.modules.pop("torch_fidelity", None)
        else:
            sys.modules["torch_fidelity"] = previous


def fid(real: list[np.ndarray], fake: list[np.ndarray], weights: str | Path | None) -> dict:
    """FID between two image sets (C, H, W) in 0..255, with Inception weights from a local file.

    Features are torch-fidelity's InceptionV3 pool3 (2048) outputs, the network built with
    ``feature_extractor_weights_path`` set to ``weights``: torch-fidelity downloads only when
    that path is ``None``, which this function never passes, so nothing is ever downloaded.
    The file must hold a plain state_dict of tensors (checked with ``weights_only=True``
    before torch-fidelity loads it), e.g. torch-fidelity's
    ``weights-inception-2015-12-05-6726825d.pth``. The distance is
    :func:`frechet_distance_from_features`.

    Returns:
        ``{"fid": value, "images": n_real, "weights": path, "note": ...}``, or
        ``{"fid": None, "reason": "FID not computed: ..."}`` when no path is given, the file
        is absent or not Inception weights, torch-fidelity is missing, or a set has fewer
        than two images. With fewer images than 2048 the covariances are rank-deficient and
        the figure is indicative only (the note says so).
    """
    if not weights:
        return {"fid": None, "reason": "FID not computed: no Inception weights path given "
                                       f"(--inception-weights or ${INCEPTION_WEIGHTS_ENV}); nothing is downloaded"}
    path = Path(weights)
    if not path.is_file():
        return {"fid": None, "reason": f"FID not computed: no Inception weights at {path}"}
    if len(real) < 2 or len(fake) < 2:
        return {"fid": None, "reason": f"FID not computed: needs at least two images per set, got {len(real)} and {len(fake)}"}
    try:
        cls = _inception_v3_class()
    except ModuleNotFoundError:
        return {"fid": None, "reason": "FID not computed: torch-fidelity is not installed (pip install torch-fidelity)"}
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)  # plain tensors only: no code from a pickle
        net = cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    except Exception as e:  # noqa: BLE001 — any load failure means "not usable Inception weights"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"fid": None, "reason": f"FID not computed: {path} is not torch-fidelity InceptionV3 weights ({first})"}
    net.eval()

    def features(images: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([
                net(torch.from_numpy(np.clip(np.rint(im), 0, 255).astype(np.uint8))[None])[0].numpy()
                for im in images
            ]).astype(np.float64)

    n = min(len(real), len(fake))
    return {"fid": frechet_distance_from_features(features(real), features(fake)),
            "images": len(real), "weights": str(path),
            "note": f"torch-fidelity InceptionV3 pool3 features of {len(real)} and {len(fake)} images"
                    + ("; fewer than 2048, so indicative only" if n < 2048 else "")}
