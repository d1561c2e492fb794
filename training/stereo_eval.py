"""Evaluate a stereo bundle on whole images through the real edge/decoder parts.

Per pair: each view is padded to the encoder stride (edge replication), encoded by its
own ONNX encoder (ONNX Runtime, one thread, as on the edge), rounded, entropy-coded with
the bundle's static tables into bytes; the decoder side entropy-decodes those bytes
and runs the joint decoder; the output is cropped back, rounded to 8 bits (what a
viewer would see) and measured. Rate is 8 × payload bytes. The latent grid
(H/16, W/16) follows from the image size, which the container carries beside the
payload (the file name here, the stream header on the wire).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_encoder.encoder import EdgeEncoder
from fusion_decoder.runtime import JointDecoderRuntime
from ndsc.bundle import load_bundle
from training.image_metrics import bpd, bpp, fid, ms_ssim, psnr



def to_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) floats → 8-bit values (as float32), clipped and rounded."""
    return np.clip(np.rint(image), 0, 255).astype(np.float32)


def save_side_by_side(path: Path, original: np.ndarray, reconstruction: np.ndarray) -> Path:
    """Write a PNG: originals on the top row, reconstructions below; inputs (N, 3, H, W)."""
    from PIL import Image

    top = np.concatenate(list(original), axis=-1)
    bottom = np.concatenate(list(reconstruction), axis=-1)
    grid = np.concatenate([top, bottom], axis=-2)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(grid), 0, 255).astype(np.uint8).transpose(1, 2, 0)).save(path)
    return path


class StereoCodec:
    """A bundle's edge encoders and joint decoder for whole images of any size, at one quality point.

    Encoding and decoding call exactly what serving calls (``EdgeEncoder.encode_frame``,
    ``JointDecoderRuntime.decode_batch`` with the frame shape), so offline figures are what
    the live gRPC path gives.

    Typical workflow::

        codec = StereoCodec("ndsc/bundles/stereo-mb", quality="3")   # or ("5", "1"): a point per view
        payloads, seconds = codec.encode(pair)           # pair: (2, 3, H, W) in 0..255
        x_hat = codec.decode(payloads, pair.shape[-2:])  # (2, 3, H, W)
    """

    def __init__(self, bundle_path: str | Path, device: str | None = "cpu",
                 quality: str | Sequence[str | None] | None = None):
        self.bundle = load_bundle(bundle_path)
        if self.bundle.modality != "stereo":
            raise ValueError(f"{bundle_path} is a {self.bundle.modality} bundle, not stereo")
        n = self.bundle.n_sources
        per_view = [quality] * n if quality is None or isinstance(quality, str) else list(quality)
        if len(per_view) != n:
            raise ValueError(f"{len(per_view)} quality points for {n} views")
        self.encoders = [EdgeEncoder(self.bundle, i, quality=q) for i, q in enumerate(per_view)]
        #: each view's operating point ("" for a fixed-rate bundle)
        self.qualities = [e.quality for e in self.encoders]
        #: the operating point's name; "5/1" when the views code at different points
        self.quality = self.qualities[0] if len(set(self.qualities)) == 1 else "/".join(self.qualities)
        self.runtime = JointDecoderRuntime(self.bundle, device=device)

    def encode_view(self, i: int, view: np.ndarray) -> bytes:
        """One camera's whole frame (3, H, W) → payload bytes (what node i would send)."""
        return self.encoders[i].encode_frame(np.asarray(view, np.float32))

    def encode(self, pair: np.ndarray) -> tuple[list[bytes], list[float]]:
        """Both views → payloads and per-view encode seconds (ONNX + rounding + ANS)."""
        payloads, seconds = [], []
        for i, view in enumerate(pair):
            start = time.perf_counter()
            payloads.append(self.encode_view(i, view))
            seconds.append(time.perf_counter() - start)
        return payloads, seconds

    def decode(self, payloads: list[bytes | None], hw: tuple[int, int]) -> np.ndarray:
        """Payloads (None: a missing view) → reconstructions (N, 3, H, W), unrounded floats."""
        channels = self.bundle.sources[0].input_shape[0]
        qualities = [[q or None for q in self.qualities]]
        x_hat, _ = self.runtime.decode_batch([payloads], frame_shape=(channels, *hw), qualities=qualities)
        return x_hat[0]


def evaluate_pairs(bundle_path: str | Path, pairs: list[tuple[str, np.ndarray]], out_dir: str | Path | None = None,
                   inception_weights: str | Path | None = None,
                   quality: str | Sequence[str | None] | None = None) -> dict[str, Any]:
    """Whole-image figures per scene and view at operating point ``quality`` (None: the default; one
    point per view, e.g. ``("5", "1")``, codes each view at its own point),
    pooled totals (all views, and per camera), optional PNGs and FID.

    Returns ``{"pairs": [...], "total": {...}, "per_view": [...], "fid": {...}}``; each view row
    has bytes, bpp, BPD, PSNR, MS-SSIM and encode seconds per megapixel.
    """
    codec = StereoCodec(bundle_path, quality=quality)
    rows, originals, recons = [], [], []
    for scene, pair in pairs:
        payloads, seconds = codec.encode(pair)
        x_hat = to_uint8(codec.decode(payloads, pair.shape[-2:]))
        h, w = pair.shape[-2:]
        views = []
        for i in range(len(pair)):
            ssim, win = ms_ssim(pair[i], x_hat[i])
            views.append({"view": codec.bundle.sources[i].name, "bytes": len(payloads[i]),
                          "bpp": bpp(len(payloads[i]), h, w), "bpd": bpd(len(payloads[i]), h, w, pair.shape[1]),
                          "psnr_db": psnr(pair[i], x_hat[i]), "ms_ssim": ssim, "ms_ssim_window": win,
                          "encode_s_per_mpix": seconds[i] / (h * w / 1e6)})
        row = {"scene": scene, "height": h, "width": w, "views": views}
        if out_dir is not None:
            row["png"] = str(save_side_by_side(Path(out_dir) / f"{scene}.png", pair, x_hat))
        rows.append(row)
        originals.extend(pair)
        recons.extend(x_hat)
    pixels = sum(r["height"] * r["width"] * len(r["views"]) for r in rows)
    total_bytes = sum(v["bytes"] for r in rows for v in r["views"])
    mse = sum(float(np.sum((o.astype(np.float64) - x) ** 2)) for o, x in zip(originals, recons)) / sum(o.size for o in originals)
    total = {"bytes": total_bytes, "bpp": 8.0 * total_bytes / pixels, "bpd": 8.0 * total_bytes / (3 * pixels),
             "psnr_db": float(10 * np.log10(255.0 ** 2 / mse)),
             "ms_ssim": float(np.mean([v["ms_ssim"] for r in rows for v in r["views"]])),
             "encode_s_per_mpix": float(np.mean([v["encode_s_per_mpix"] for r in rows for v in r["views"]]))}
    n = codec.bundle.n_sources
    per_view = [{"view": codec.bundle.sources[i].name,
                 **pooled_view([v[i] for v in (p for _, p in pairs)], recons[i::n], [r["views"][i] for r in rows])}
                for i in range(n)]
    return {"bundle_id": codec.bundle.bundle_id, "quality": codec.quality, "pairs": rows, "total": total,
            "per_view": per_view, "fid": fid(originals, recons, inception_weights)}


def pooled_view(images: list[np.ndarray], recons: list[np.ndarray], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One camera's figures over several scenes: bits over pixels, PSNR of the pooled MSE, mean MS-SSIM."""
    pixels = sum(im.shape[-2] * im.shape[-1] for im in images)
    nbytes = sum(r["bytes"] for r in rows)
    sq = sum(float(np.sum((im.astype(np.float64) - x) ** 2)) for im, x in zip(images, recons))
    return {"bytes": nbytes, "bpp": 8.0 * nbytes / pixels, "bpd": 8.0 * nbytes / (3 * pixels),
            "psnr_db": float(10 * np.log10(255.0 ** 2 * 3 * pixels / sq)),
            "ms_ssim": float(np.mean([r["ms_ssim"] for r in rows]))}
