"""Conventional codecs a user would pick, in the same harness (their own bytes are the rate).

* ECG lossless: ``zstd`` (first differences of the int16 samples, zstandard level 19) and
  ``flac`` (int16 FLAC through soundfile), at a sample resolution of ``lsb_uv`` µV;
* ECG lossy: ``dct-zstd``, an orthonormal DCT per window and lead, uniform quantisation with
  step ``step`` (mV), int16 coefficients compressed with zstandard; ``wavelet-zstd``, the
  textbook transform codec that is the anchor every ECG figure stands beside: db4 wavelet
  (periodization, 6 levels) per lead, **one** uniform mid-tread step for every lead of the
  window, integer coefficients through zstd level 19, the step sent in a 4-byte header;
* images: ``jpeg`` and ``webp`` of each view with Pillow at ``quality`` (the stereo module's
  settings), file bytes including headers.

Each source is coded alone: these are separate-coding baselines, except ``wavelet-zstd``, which
codes every lead of a window in one payload (a centralised codec: one zstd frame per window
instead of one per node, so its header costs are paid once).
"""
from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from training.baselines.base import Baseline, register_baseline
from training.data import JointDataset


class _PerSource(Baseline):
    """A codec applied to each (window, source) array on its own."""

    decoding = "separate"

    def fit(self, data: JointDataset) -> dict[str, Any]:
        self.shape = data.window_shape
        self.sample_rate = data.sample_rate
        return {"train_seconds": 0.0}

    def compress(self, windows: np.ndarray) -> list[list[bytes]]:
        return [[self.encode_one(w[i]) for i in range(w.shape[0])] for w in windows]

    def decompress(self, payloads: list[list[bytes]]) -> np.ndarray:
        return np.stack([np.stack([self.decode_one(p) for p in row]) for row in payloads]).astype(np.float32)

    def encode_one(self, x: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode_one(self, payload: bytes) -> np.ndarray:
        raise NotImplementedError


def _to_int16(x: np.ndarray, lsb_mv: float) -> np.ndarray:
    q = np.rint(np.asarray(x, np.float64) / lsb_mv)
    if np.abs(q).max(initial=0) > 32767:
        raise ValueError(f"signal exceeds int16 at {lsb_mv * 1000:g} µV per step")
    return q.astype(np.int16)


@register_baseline("zstd")
class ZstdLossless(_PerSource):
    """Params: ``lsb_uv`` (µV per integer step, default 1), ``level`` (default 19)."""

    def encode_one(self, x: np.ndarray) -> bytes:
        import zstandard

        q = _to_int16(x, float(self.params.get("lsb_uv", 1.0)) / 1000.0).astype(np.int32)
        # First differences: ECG is smooth, so differences are small and compress well.
        d = np.diff(q, axis=-1, prepend=0).astype(np.int16)
        return zstandard.ZstdCompressor(level=int(self.params.get("level", 19))).compress(d.tobytes())

    def decode_one(self, payload: bytes) -> np.ndarray:
        import zstandard

        d = np.frombuffer(zstandard.ZstdDecompressor().decompress(payload), np.int16).reshape(self.shape)
        return np.cumsum(d.astype(np.int32), axis=-1) * float(self.params.get("lsb_uv", 1.0)) / 1000.0


@register_baseline("flac")
class FlacLossless(_PerSource):
    """Params: ``lsb_uv`` (µV per integer step, default 1). One FLAC stream per window and source."""

    def encode_one(self, x: np.ndarray) -> bytes:
        import soundfile

        q = _to_int16(x, float(self.params.get("lsb_uv", 1.0)) / 1000.0)
        buf = io.BytesIO()
        soundfile.write(buf, q.T, int(round(self.sample_rate or 500)), format="FLAC", subtype="PCM_16")
        return buf.getvalue()

    def decode_one(self, payload: bytes) -> np.ndarray:
        import soundfile

        q, _ = soundfile.read(io.BytesIO(payload), dtype="int16", always_2d=True)
        return q.T.astype(np.float64) * float(self.params.get("lsb_uv", 1.0)) / 1000.0


@register_baseline("dct-zstd")
class DctZstd(_PerSource):
    """Params: ``step`` (quantiser step of the orthonormal DCT coefficients, mV), ``level``."""

    def encode_one(self, x: np.ndarray) -> bytes:
        import zstandard
        from scipy.fft import dct

        c = np.rint(dct(np.asarray(x, np.float64), norm="ortho", axis=-1) / float(self.params["step"]))
        c = np.clip(c, -32768, 32767).astype(np.int16)
        return zstandard.ZstdCompressor(level=int(self.params.get("level", 19))).compress(c.tobytes())

    def decode_one(self, payload: bytes) -> np.ndarray:
        import zstandard
        from scipy.fft import idct

        c = np.frombuffer(zstandard.ZstdDecompressor().decompress(payload), np.int16).reshape(self.shape)
        return idct(c.astype(np.float64) * float(self.params["step"]), norm="ortho", axis=-1)


class _Pillow(_PerSource):
    codec = "jpeg"

    def encode_one(self, x: np.ndarray) -> bytes:
        from PIL import Image

        from training.baselines_image import FORMATS

        fmt, opts = FORMATS[self.codec]
        im = Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(1, 2, 0))
        buf = io.BytesIO()
        im.save(buf, fmt, quality=int(self.params["quality"]), **opts)
        return buf.getvalue()

    def decode_one(self, payload: bytes) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"), np.float64).transpose(2, 0, 1)


@register_baseline("jpeg")
class Jpeg(_Pillow):
    """Params: ``quality`` (1..100). Pillow JPEG, 4:2:0, optimised Huffman tables."""

    codec = "jpeg"


@register_baseline("webp")
class WebP(_Pillow):
    """Params: ``quality`` (1..100). Pillow WebP, method 6."""

    codec = "webp"


#: the wavelet anchor's transform: Daubechies-4, periodic extension, 6 levels
WAVELET, WAVELET_MODE, WAVELET_LEVEL = "db4", "periodization", 6


def wavelet_zstd_encode(leads: np.ndarray, step: float, level: int = 19) -> bytes:
    """Code (L, T) samples (mV): db4 coefficients per lead, one mid-tread step, zstd.

    Payload: ``<f4`` step, then zstd of the integer coefficients (int16 when every one fits,
    else int32, said by the sign of the stored step) lead by lead, coarse to fine subbands.
    """
    import pywt
    import zstandard

    coeffs = pywt.wavedec(np.asarray(leads, np.float64), WAVELET, mode=WAVELET_MODE, level=WAVELET_LEVEL, axis=-1)
    q = np.rint(np.concatenate(coeffs, axis=-1) / step).astype(np.int64)
    wide = np.abs(q).max(initial=0) > 32767
    body = q.astype("<i4" if wide else "<i2").tobytes()
    return struct.pack("<f", -step if wide else step) + zstandard.ZstdCompressor(level=level).compress(body)


def wavelet_zstd_decode(payload: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`wavelet_zstd_encode` for (L, T) = ``shape``."""
    import pywt
    import zstandard

    (step,) = struct.unpack("<f", payload[:4])
    dtype = "<i4" if step < 0 else "<i2"
    q = np.frombuffer(zstandard.ZstdDecompressor().decompress(payload[4:]), dtype).reshape(shape[0], -1)
    template = pywt.wavedec(np.zeros(shape[1]), WAVELET, mode=WAVELET_MODE, level=WAVELET_LEVEL)
    bounds = np.cumsum([0] + [len(c) for c in template])
    coeffs = [q[:, lo:hi].astype(np.float64) * abs(step) for lo, hi in zip(bounds[:-1], bounds[1:])]
    return pywt.waverec(coeffs, WAVELET, mode=WAVELET_MODE, axis=-1)[:, :shape[1]]


@register_baseline("wavelet-zstd")
class WaveletZstd(Baseline):
    """Params: ``step`` (mV, one quantiser step for all leads), ``level`` (zstd, default 19).

    Every lead of a window travels in one payload (credited to source 0; the other sources'
    payloads are empty), as a codec that sees the whole record would send it.
    """

    decoding = "separate"  # no source's reconstruction uses another source's bytes

    def fit(self, data: JointDataset) -> dict[str, Any]:
        self.shape = data.window_shape
        return {"train_seconds": 0.0}

    def compress(self, windows: np.ndarray) -> list[list[bytes]]:
        n, s, c, t = windows.shape
        step, level = float(self.params["step"]), int(self.params.get("level", 19))
        return [[wavelet_zstd_encode(w.reshape(s * c, t), step, level)] + [b""] * (s - 1) for w in windows]

    def decompress(self, payloads: list[list[bytes]]) -> np.ndarray:
        c, t = self.shape
        s = len(payloads[0]) if payloads else 0
        return np.stack([wavelet_zstd_decode(row[0], (s * c, t)).reshape(s, c, t) for row in payloads]).astype(np.float32)
