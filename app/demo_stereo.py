"""The stereo demo (``ndsc demo --stereo``): two camera nodes send whole frames of a stereo pair.

:func:`stereo_sources` gives node i view i of scikit-image's Middlebury Motorcycle pair
(``stereo-skimage:``, no download), replayed every two seconds; :class:`ViewQuality` subscribes
to the decoder's reconstructions, joins the slices of each whole frame, and measures PSNR
and MS-SSIM per view against the frames the nodes sent (every decoded frame, not an audit
sample). Edge-side code: no torch (MS-SSIM is numpy's, :func:`ndsc.metrics.ms_ssim`).
"""
from __future__ import annotations

import threading

import grpc
import numpy as np

from ndsc.bundle import Bundle
from ndsc.errors import UsageError
from ndsc.metrics import ms_ssim
from ndsc.wire import pb, pb_grpc

PEAK = 255.0
#: bytes of one Reconstruction message this client accepts (the decoder slices frames below its own limit)
MAX_MESSAGE = 64 * 1024 * 1024


def stereo_sources(bundle: Bundle, nodes: int | None = None) -> list[str]:
    """Source spec per camera node: its view of the Motorcycle pair, repeated (one frame every two seconds:
    decoding a whole pair with side information and the learned fusion takes 1–2 s on one loaded CPU
    thread, and a faster camera would only queue frames behind the decoder: each shown later than the
    last, and what the demo's drain budget leaves at stop never shown)."""
    if bundle.modality != "stereo" or bundle.n_sources != 2:
        raise UsageError(f"--stereo needs a two-view stereo bundle; {bundle.path} is {bundle.modality!r} "
                         f"with {bundle.n_sources} sources", "leave --bundle out (the shipped stereo bundle)")
    return [f"stereo-skimage:#view={i},repeat=100000,fps=0.5" for i in range(nodes or bundle.n_sources)]


class ViewQuality:
    """PSNR and MS-SSIM per view of the live reconstructions against the frames the nodes sent.

    Reconstructions are rounded to 8 bits (what a viewer shows) before they are measured,
    as ``ndsc stereo-eval`` does; a view the decoder had to estimate is left out.
    """

    def __init__(self, originals: np.ndarray, decoder: str, group: str, names: tuple[str, ...] = ("left", "right")):
        self.originals = np.asarray(originals, np.float64)  # (N, 3, H, W)
        self.names = names
        self.latest: dict[int, tuple[float, float]] = {}  # view → (PSNR dB, MS-SSIM) of the last frame
        self.frames = 0
        self._lock = threading.Lock()
        # a whole frame's slice may exceed gRPC's 4 MB default: accept what the decoder may send
        self._channel = grpc.insecure_channel(decoder, options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
        self._call = pb_grpc.FusionDecoderStub(self._channel).Subscribe(
            pb.SubscribeRequest(group=group, include_samples=True, samples_f32le=True))
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        parts: dict[int, list] = {}
        try:
            for r in self._call:
                parts.setdefault(int(r.window), []).append(r)
                rs = parts[int(r.window)]
                got = sum(len(p.samples_f32le) // 4 for p in rs)
                if got < int(np.prod(r.shape)):
                    continue  # a whole frame comes as several slices: wait for the rest
                del parts[int(r.window)]
                rs.sort(key=lambda p: p.sample_offset)
                x_hat = np.frombuffer(b"".join(p.samples_f32le for p in rs), "<f4").reshape(tuple(r.shape))
                self.add(x_hat, list(r.present))
        except grpc.RpcError:
            pass  # the decoder stopped or the demo closed the stream

    def add(self, x_hat: np.ndarray, present: list[bool]) -> None:
        """Measure one reconstruction (N, 3, H, W) of the pair."""
        figures = {}
        for i, original in enumerate(self.originals):
            if present[i] and x_hat[i].shape == original.shape:
                rounded = np.clip(np.rint(x_hat[i]), 0, PEAK)
                mse = float(np.mean((original - rounded) ** 2))
                figures[i] = (float(10 * np.log10(PEAK ** 2 / max(mse, 1e-12))), ms_ssim(original, rounded))
        with self._lock:
            self.latest.update(figures)
            self.frames += 1

    def render(self) -> str:
        """The line under the demo table: PSNR and MS-SSIM per view of the last decoded frame."""
        with self._lock:
            if not self.latest:
                return "per view: - (no frame decoded yet)"
            views = [f"{self.names[i]} PSNR {db:.2f} dB, MS-SSIM {ssim:.4f}" for i, (db, ssim) in sorted(self.latest.items())]
            return f"measured {self.frames} decoded whole frames; the latest: " + "; ".join(views)

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(timeout=10)  # a frame being measured finishes before the process exits
        self._channel.close()
