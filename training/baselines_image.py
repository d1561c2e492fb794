"""JPEG and WebP of each view with Pillow: quality sweeps and matched-rate points.

Rate is the size of the file Pillow wrote (headers included), so it is compared with
the codec's payload bytes as an upper bound on what these standard codecs need.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

from training.image_metrics import bpp, bpd, ms_ssim, psnr

FORMATS = {"jpeg": ("JPEG", {"subsampling": "4:2:0", "optimize": True}), "webp": ("WEBP", {"method": 6})}


@dataclass(frozen=True)
class Coded:
    """One view coded by a standard codec."""

    codec: str
    quality: int
    nbytes: int
    reconstruction: np.ndarray  # (3, H, W) float32, 0..255
    encode_seconds: float


def encode(image: np.ndarray, codec: str, quality: int) -> Coded:
    """Encode (3, H, W) 0..255 with ``codec`` ("jpeg" | "webp") at ``quality`` (1..100) and decode."""
    from PIL import Image

    if codec not in FORMATS:
        raise ValueError(f"unknown codec {codec!r}; known: {sorted(FORMATS)}")
    fmt, opts = FORMATS[codec]
    im = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    buf = io.BytesIO()
    start = time.perf_counter()
    im.save(buf, fmt, quality=int(quality), **opts)
    seconds = time.perf_counter() - start
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as dec:
        rec = np.asarray(dec.convert("RGB")).transpose(2, 0, 1).astype(np.float32)
    return Coded(codec, int(quality), len(data), rec, seconds)


def at_matched_rate(image: np.ndarray, codec: str, target_bytes: int) -> Coded:
    """The highest quality whose file is at most ``target_bytes`` (else quality 1).

    Binary search over the integer quality; file size grows with quality for both codecs
    except for rare one-step wiggles, which at worst pick a neighbouring quality.
    """
    lo, hi, best = 1, 100, None
    while lo <= hi:
        mid = (lo + hi) // 2
        coded = encode(image, codec, mid)
        if coded.nbytes <= target_bytes:
            best, lo = coded, mid + 1
        else:
            hi = mid - 1
    return best if best is not None else encode(image, codec, 1)


def point(image: np.ndarray, coded: Coded) -> dict:
    """Rate–quality figures of one coded view."""
    h, w = image.shape[-2:]
    ssim, win = ms_ssim(image, coded.reconstruction)
    return {"codec": coded.codec, "quality": coded.quality, "bytes": coded.nbytes,
            "bpp": bpp(coded.nbytes, h, w), "bpd": bpd(coded.nbytes, h, w, image.shape[0]),
            "psnr_db": psnr(image, coded.reconstruction), "ms_ssim": ssim, "ms_ssim_window": win,
            "encode_seconds": coded.encode_seconds}


def sweep(images: list[np.ndarray], codec: str, qualities: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)) -> list[dict]:
    """Rate–distortion curve over ``images`` (all views pooled): one point per quality.

    Rate is total bits / total pixels; PSNR is from the pooled MSE; MS-SSIM the mean.
    """
    out = []
    for q in qualities:
        coded = [encode(im, codec, q) for im in images]
        out.append(pooled(images, [c.reconstruction for c in coded], [c.nbytes for c in coded],
                          codec=codec, quality=q, encode_seconds=sum(c.encode_seconds for c in coded)))
    return out


def pooled(images: list[np.ndarray], recs: list[np.ndarray], nbytes: list[int], **extra) -> dict:
    """Pool views of different sizes: bits over pixels, PSNR of the pooled MSE, mean MS-SSIM."""
    pixels = sum(im.shape[-2] * im.shape[-1] for im in images)
    sq = sum(float(np.sum((im.astype(np.float64) - r) ** 2)) for im, r in zip(images, recs))
    mse = sq / sum(im.size for im in images)
    return {**extra, "bytes": int(sum(nbytes)), "bpp": 8.0 * sum(nbytes) / pixels,
            "bpd": 8.0 * sum(nbytes) / (pixels * images[0].shape[0]),
            "psnr_db": float(10 * np.log10(255.0 ** 2 / mse)) if mse > 0 else float("inf"),
            "ms_ssim": float(np.mean([ms_ssim(im, r)[0] for im, r in zip(images, recs)]))}
