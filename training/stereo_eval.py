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
from typing import Any

import numpy as np

from edge_encoder.encoder import EdgeEncoder, quantise
from fusion_decoder.runtime import JointDecoderRuntime
from ndsc.bundle import load_bundle
from ndsc.sources.images import pad_to_multiple
from training.image_metrics import bpd, bpp, fid, ms_ssim, psnr

STRIDE = 16


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
    """A bundle's edge encoders and joint decoder for whole images of any size.

    Typical workflow::

        codec = StereoCodec("runs/stereo/bundle")
        payloads, seconds = codec.encode(pair)           # pair: (2, 3, H, W) in 0..255
        x_hat = codec.decode(payloads, pair.shape[-2:])  # (2, 3, H, W)
    """

    def __init__(self, bundle_path: str | Path, device: str | None = "cpu"):
        self.bundle = load_bundle(bundle_path)
        if self.bundle.modality != "stereo":
            raise ValueError(f"{bundle_path} is a {self.bundle.modality} bundle, not stereo")
        self.encoders = [EdgeEncoder(self.bundle, i) for i in range(self.bundle.n_sources)]
        self.runtime = JointDecoderRuntime(self.bundle, device=device)

    def encode_view(self, i: int, view: np.ndarray) -> bytes:
        """One camera's whole frame (3, H, W) → payload bytes (what node i would send)."""
        padded = pad_to_multiple(np.asarray(view, np.float32), (STRIDE, STRIDE))
        y = quantise(self.encoders[i].analysis(padded[None])[0])  # (M, h, w)
        return self.encoders[i].coder.encode(y.reshape(y.shape[0], -1))

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
        h, w = -(-hw[0] // STRIDE), -(-hw[1] // STRIDE)  # latent grid of the padded image
        m = self.bundle.sources[0].latent_shape[0]
        symbols = np.zeros((1, len(payloads), m, h, w), np.float32)
        present = np.zeros((1, len(payloads)), bool)
        for i, payload in enumerate(payloads):
            if payload is not None:
                symbols[0, i] = self.runtime.coders[i].decode(payload, h * w).reshape(m, h, w)
                present[0, i] = True
        x_hat = self.runtime.synthesise(symbols, present)[0]
        return x_hat[..., :hw[0], :hw[1]]


def evaluate_pairs(bundle_path: str | Path, pairs: list[tuple[str, np.ndarray]], out_dir: str | Path | None = None,
                   inception_weights: str | Path | None = None) -> dict[str, Any]:
    """Whole-image figures per scene and view, pooled totals, optional PNGs and FID.

    Returns ``{"pairs": [...], "total": {...}, "fid": {...}}``; each view row has bytes,
    bpp, BPD, PSNR, MS-SSIM and encode seconds per megapixel.
    """
    codec = StereoCodec(bundle_path)
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
    return {"bundle_id": codec.bundle.bundle_id, "pairs": rows, "total": total,
            "fid": fid(originals, recons, inception_weights)}
