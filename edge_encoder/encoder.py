"""One source's encoder at the edge: ONNX Runtime + rounding + static-table coding."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ndsc.bundle import Bundle, SourceInfo
from ndsc.sources.base import check_window


def quantise(y: np.ndarray, gain: np.ndarray | None = None) -> np.ndarray:
    """Integer symbols of one window's encoder outputs y (M, *L): ``round(y · gain)``, half to even
    (like ``torch.round``).

    ``gain`` (M,) float32 is the operating point's per-channel quantiser gain (None: 1); the
    product is one IEEE float32 multiplication, so every machine computes the same symbols.
    """
    y = np.asarray(y, dtype=np.float32)
    if gain is not None:
        y = y * np.asarray(gain, np.float32).reshape(-1, *([1] * (y.ndim - 1)))
    return np.rint(y).astype(np.int64)


class EdgeEncoder:
    """Encodes windows of one source into coded payload bytes.

    Loads only this source's ONNX encoder and entropy tables from the bundle.

    Typical workflow::

        enc = EdgeEncoder(load_bundle(path), source_index=0)
        payload = enc.encode(window)          # window: (C, T) float32
        symbols = enc.symbols(window)         # (M, L) ints, for checks
    """

    def __init__(self, bundle: Bundle, source_index: int, intra_op_threads: int = 1, quality: str | None = None):
        """Args:
            quality: the operating point of a variable-rate bundle (None: its default).

        Raises:
            BundleError: an unknown quality point.
        """
        self.bundle_id = bundle.bundle_id
        self.source_index = source_index
        self.info: SourceInfo = bundle.source(source_index)
        point = self.info.quality(quality)  # raises BundleError for a point the bundle lacks
        #: the operating point's name ("" for a fixed-rate bundle), sent in the stream header
        self.quality = point.name if point else ""
        self.gain = self.info.gain(self.quality or None)
        opts = ort.SessionOptions()
        # Edge devices are small: one thread is the honest measurement and avoids oversubscription.
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(bundle.file(self.info.encoder_file)), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input = self.session.get_inputs()[0].name
        self.coder = self.info.coder(self.quality or None)

    def analysis(self, windows: np.ndarray) -> np.ndarray:
        """Float latents for a batch of windows (B, *input_shape) → (B, *latent_shape)."""
        (y,) = self.session.run(None, {self._input: np.ascontiguousarray(windows, dtype=np.float32)})
        return y

    def symbols(self, window: np.ndarray) -> np.ndarray:
        """Integer symbols (M, L) of one window."""
        x = check_window(window, self.info.input_shape)
        y = self.analysis(x[None])[0]
        return quantise(y, self.gain).reshape(self.info.latent_shape[0], -1)

    def encode(self, window: np.ndarray) -> bytes:
        """Coded payload of one window."""
        return self.coder.encode(self.symbols(window))

    def frame_symbols(self, frame: np.ndarray) -> np.ndarray:
        """Integer symbols (M, h·w) of a whole frame (C, H, W) of any size (fully convolutional encoders).

        The frame is padded on the bottom/right to the stride by edge replication (as the
        offline evaluation does); the decoder crops its reconstruction back to H×W.
        """
        from ndsc.sources.images import pad_to_multiple

        s = self.info.frame_stride
        latent = self.info.frame_latent_shape(frame.shape)  # raises for a shape this source cannot code
        assert s is not None  # frame_latent_shape raised for a source without whole frames
        y = quantise(self.analysis(pad_to_multiple(np.asarray(frame, np.float32), (s, s))[None])[0], self.gain)
        if y.shape != latent:
            raise ValueError(f"encoder gave latents {y.shape} for frame {frame.shape}, expected {latent}")
        return y.reshape(latent[0], -1)

    def encode_frame(self, frame: np.ndarray) -> bytes:
        """Coded payload of a whole frame (C, H, W): every latent position, the same static tables."""
        return self.coder.encode(self.frame_symbols(frame))
