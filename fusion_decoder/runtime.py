"""Joint decoding runtime: payload bytes of all sources → reconstructions (torch)."""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch

from ndsc.bundle import Bundle
from ndsc.binning import SyndromeError
from ndsc.entropy import EntropyCodingError, LatentCoder, dequantise
from ndsc.stereo_tiles import STEREO_TILES, StereoTiles
from models.decoders import build_decoder
from models.device import resolve_device

log = logging.getLogger("ndsc.decoder")

#: windows per joint-decoder call on CPU (a batch beyond it is decoded in slices)
CPU_SLICE = 32
#: On CPU, a slice of at most this many 1-D windows runs torch's native convolutions, not oneDNN's.
#: Eager oneDNN reorders every convolution's weights on every call, a fixed cost that dominates small
#: batches: native/oneDNN time 0.42–0.62 at 2 windows, 0.75–0.86 at 4 (ecg-synth-quick, ecg-12lead);
#: around 8 it is a draw, and from 16 windows on the native path's im2col costs 5–6× (synth-quick).
#: Measured by ``benchmarks/synthesis_batch.py``.
CPU_NATIVE_CONV_MAX_WINDOWS = 4


def _full_fp32_on_cuda() -> None:
    """Full float32 convolutions and matrix products on CUDA (the decoder process's setting).

    torch's default runs cuDNN convolutions in TF32, which moved reconstructions ~5e-4 (relative) away
    from the CPU's (measured on an H200: stereo pixels by up to 0.04 of 255, Gaussian samples by 1e-3),
    so a GPU decoder no longer equalled the offline evaluation and the audits. These decoders are
    small; TF32 buys them nothing measurable.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:  # torch before the fp32_precision settings
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


@contextlib.contextmanager
def _native_convolutions() -> Iterator[None]:
    """torch's own CPU convolutions (oneDNN off) inside the block; only that flag is touched."""
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = True


class _ScaledDecoder(torch.nn.Module):
    """The joint decoder with its output scaled to physical units: what the traced graph runs."""

    def __init__(self, decoder: torch.nn.Module, scale: float):
        super().__init__()
        self.decoder = decoder
        self.scale = scale

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.decoder(*args) * self.scale


class JointDecoderRuntime:
    """Entropy-decodes every source's payload and runs the joint decoder in batches.

    Typical workflow::

        rt = JointDecoderRuntime(load_bundle(path))
        x_hat, present = rt.decode_batch([[p0, p1], [p0, None]])   # None: missing node
    """

    def __init__(self, bundle: Bundle, device: str | None = None):
        self.bundle = bundle
        self.device = resolve_device(device, "decoding")  # None: CUDA when present, else CPU
        self.coders = [s.coder() for s in bundle.sources]
        # Variable-rate bundles: a coder and the float32 quantiser gains per (source, operating point).
        self._point_coders: dict[tuple[int, str], LatentCoder] = {}
        self._gains: dict[tuple[int, str], np.ndarray] = {}
        for i, s in enumerate(bundle.sources):
            for q in s.quality_points:
                self._point_coders[i, q.name] = s.coder(q.name)
                self._gains[i, q.name] = s.gain(q.name)
        self.model = build_decoder(bundle.decoder["arch"], bundle.decoder["args"])
        state = torch.load(bundle.file(bundle.decoder["weights"]), map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.to(self.device).eval()
        if self.device.type == "cuda":
            _full_fp32_on_cuda()
        # Decoders work on normalised values; the bundle records the scale back to physical units.
        self.output_scale = float(bundle.decoder.get("output_scale", 1.0))
        self._plans: dict[tuple, tuple[LatentCoder, tuple[int, ...], int]] = {}
        self.entropy_decodes = 0  # payloads entropy-decoded so far (each should be decoded once)
        self._graph_latents = torch.Size(self.latent_shape(0))
        self.graph = self._traced_graph()

    @property
    def n_sources(self) -> int:
        return self.bundle.n_sources

    def _shared_latent_shape(self) -> tuple[int, ...] | None:
        """The window latent shape every source shares, or None when they differ (synthesis needs one)."""
        shape = self.latent_shape(0)
        return shape if all(self.latent_shape(i) == shape for i in range(self.n_sources)) else None

    def _traced_graph(self) -> torch.jit.ScriptModule | None:
        """The joint decoder, scaled to physical units, traced to a TorchScript graph for CPU windows of
        the bundle's 1-D latent shape; None (eager) on CUDA, for whole-frame (2-D) bundles, or when
        the graph does not reproduce the eager decoder exactly on random batches.

        Why: eager torch gives up and retakes the GIL around each of the decoder's ~120 ops. While the
        event loop holds the GIL, every retake waits up to the switch interval, so one forward is
        paid in GIL waits: 40 windows of ecg-synth-quick took 7.5 ms alone and 38 ms beside a busy
        Python thread (at load, batches behind it waited in the queue; the p99 capture →
        reconstruction at half saturation was that). A traced graph runs all its ops in one GIL
        release: 17 ms beside the same thread. ``benchmarks/synthesis_gil.py`` measures it.

        ``torch.jit.trace`` is deprecated in torch 2.13 in favour of ``torch.compile`` and
        ``torch.export``, which on CPU still run each op from Python (or need a C++ toolchain at run
        time, AOTInductor). When trace is gone, or fails, the decoder runs eager (the same numbers).
        """
        shape = self._shared_latent_shape()
        if self.device.type != "cpu" or shape is None or len(shape) != 2:
            return None
        rng = np.random.default_rng(0)

        def example(b: int) -> tuple[torch.Tensor, ...]:
            present = rng.random((b, self.n_sources)) > 0.3
            present[0] = True  # every source, and (b > 1) rows with some missing
            args = [torch.from_numpy(rng.standard_normal((b, self.n_sources, *shape), dtype=np.float32)),
                    torch.from_numpy(present.astype(np.float32))]
            if getattr(self.model, "takes_quantiser_step", False):
                args.append(torch.from_numpy(rng.uniform(0.5, 2.0, (b, self.n_sources, shape[0])).astype(np.float32)))
            return tuple(args)

        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # trace's deprecation and tracer warnings: checked below
                scaled = _ScaledDecoder(self.model, self.output_scale)
                graph = torch.jit.trace(scaled, example(4), check_trace=False)
                for b in (1, 3, CPU_SLICE):  # batch sizes other than the traced one, missing sources too
                    args = example(b)
                    if not torch.equal(graph(*args), scaled(*args)):
                        raise ValueError(f"the traced graph differs from the eager decoder at {b} windows")
        except Exception as e:  # AttributeError when torch drops trace; control flow that trace cannot follow
            log.info("joint decoder runs eager: %s", e)
            return None
        return graph

    def latent_shape(self, source_index: int, frame_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        """Latent shape of source ``source_index`` for a frame shape (None: the bundle's window shape)."""
        info = self.bundle.sources[source_index]
        return info.latent_shape if not frame_shape else info.frame_latent_shape(frame_shape)

    def quality_name(self, source_index: int, quality: str | None) -> str:
        """The operating point a stream uses ("" for a fixed-rate bundle; None/"" → the default).

        Raises:
            BundleError: a point the source does not have.
        """
        point = self.bundle.sources[source_index].quality(quality or None)
        return point.name if point else ""

    def entropy_decode(self, source_index: int, payload: bytes,
                       frame_shape: Sequence[int] | None = None, quality: str | None = None) -> np.ndarray:
        """Symbols of one source's payload, reshaped to its latent shape (M, *L) for ``frame_shape``.

        ``quality``: the stream's operating point (variable-rate bundles; None: the default).
        A syndrome-coded source's payload is not entropy-coded: it is split into its bit planes'
        bits (``SyndromeSpec.split_payload``, a dict), which the binning stage decodes.

        Raises:
            EntropyCodingError: a payload that does not decode (or, syndrome source, does not fit).
        """
        binning = self.bundle.sources[source_index].binning
        if binning is not None:
            try:
                if binning.conditional.get("kind") == STEREO_TILES:  # whole frames: each tile's header
                    tiles = StereoTiles.of(binning).at(self.quality_name(source_index, quality))
                    return tiles.parse_payload(payload, self.latent_shape(source_index, frame_shape))  # type: ignore[return-value]
                return binning.split_payload(payload)  # type: ignore[return-value]
            except SyndromeError as exc:
                raise EntropyCodingError(f"syndrome payload: {exc}") from exc
        key = (source_index, quality, tuple(frame_shape) if frame_shape else None)
        plan = self._plans.get(key)
        if plan is None:  # resolved once per (source, point, frame shape): this runs once per frame
            shape = self.latent_shape(source_index, frame_shape)
            name = self.quality_name(source_index, quality)
            coder = self._point_coders[source_index, name] if name else self.coders[source_index]
            if len(self._plans) >= 1024:  # whole frames of many sizes: bounded
                self._plans.clear()
            plan = self._plans[key] = (coder, shape, int(np.prod(shape[1:])))
        coder, shape, length = plan
        self.entropy_decodes += 1
        return coder.decode(payload, length).reshape(shape)

    def dequantise(self, source_index: int, symbols: np.ndarray, quality: str | None = None,
                   batch_axes: int = 0) -> np.ndarray:
        """Decoder-side latents (M, *L) of symbols (``batch_axes`` leading axes before M): ``symbol / gain``
        of the point, the division training does (fixed rate: the symbols)."""
        name = self.quality_name(source_index, quality)
        return dequantise(symbols, self._gains[source_index, name] if name else None, batch_axes)

    def cell_width(self, source_index: int, quality: str | None = None) -> np.ndarray:
        """(M,) width of each latent's quantisation cell at ``quality``: 1 / gain (fixed rate: 1)."""
        name = self.quality_name(source_index, quality)
        m = self.bundle.sources[source_index].latent_shape[0]
        return (1.0 / self._gains[source_index, name]).astype(np.float32) if name else np.ones(m, np.float32)

    def warm_up(self, batch_sizes: Sequence[int] | None = None, max_values: int = 1 << 17) -> float:
        """Run the joint decoder on zeros once per batch size, before the first real window; returns the
        seconds it took. Batches beyond ``max_values`` latent values are left out (one window always
        runs): a stereo patch batch of 64 would take seconds on a CPU.

        The first calls on a device are slow: on CUDA they create the cuDNN handles and load the
        kernels of each shape (measured on an H200: p99 capture → reconstruction 0.15–0.6 s at light
        load against a p50 of 5–10 ms when they landed on real windows, and +240 MiB RSS counted as
        growth under load); on CPU oneDNN builds the primitives of each batch size it meets, +8–10 ms of
        CPU the first time (ecg-synth-quick, 9 to 31 windows). A decoder pays them before it says it
        is ready instead.

        ``batch_sizes`` None: on CPU, for windows of 1-D latents, every slice size a batch can be cut
        into (1 to :data:`CPU_SLICE`: at load.py's saturation a first-met size stalled the decoding
        thread 20–60 ms, and the windows behind it); otherwise 1, 4, 16 and 64.
        """
        start = time.perf_counter()
        n, shape = self.n_sources, self._shared_latent_shape()
        if shape is None:
            return 0.0  # sources of different latent shapes: no batch to build (synthesise needs one shape)
        if batch_sizes is None:
            every_slice = self.device.type == "cpu" and len(shape) == 2
            batch_sizes = range(1, CPU_SLICE + 1) if every_slice else (1, 4, 16, 64)
        for b in [b for b in batch_sizes if b == 1 or b * int(np.prod(shape)) <= max_values]:
            present = np.ones((b, n), np.float32)
            present[0, -1] = 0.0  # a missing node's path too
            self.synthesise(np.zeros((b, n, *shape), np.float32), present, np.ones((b, n, shape[0]), np.float32))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    @torch.inference_mode()
    def synthesise(self, symbols: np.ndarray, present: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """Joint synthesis of (B, N, M, *L) dequantised latents with a (B, N) presence mask; ``steps``
        (B, N, M), each latent's cell width, goes to decoders that use it (``takes_quantiser_step``).

        On CPU a large batch runs in slices of :data:`CPU_SLICE` windows: their activations
        stay in cache (ecg-synth-quick: 160 µs/window in slices of 16–32, 210 µs at 64); a slice of
        a few 1-D windows runs torch's native convolutions (:data:`CPU_NATIVE_CONV_MAX_WINDOWS`)."""
        # Every torch call made from Python here gives up the GIL and must take it back (see
        # _traced_graph): on the traced path a batch of one slice makes a single such call.
        on_cpu = self.device.type == "cpu"
        args = [torch.from_numpy(np.asarray(symbols, dtype=np.float32)),
                torch.from_numpy(np.asarray(present, dtype=np.float32))]
        if steps is not None and getattr(self.model, "takes_quantiser_step", False):
            args.append(torch.from_numpy(np.asarray(steps, dtype=np.float32)))
        if not on_cpu:
            args = [a.to(self.device) for a in args]
        n = max(CPU_SLICE if on_cpu else len(args[0]), 1)
        # the traced graph (scaled to physical units inside) where it was traced for these latents
        traced = self.graph is not None and args[0].shape[2:] == self._graph_latents
        model = self.graph if traced else self.model
        out = []
        for k in range(0, len(args[0]), n):
            part = args if len(args[0]) <= n else [a[k:k + n] for a in args]
            with self._convolutions_for(part[0]):
                out.append(model(*part))
        x_hat = out[0] if len(out) == 1 else torch.cat(out)
        if not traced:
            x_hat = x_hat * self.output_scale
        if not on_cpu or x_hat.dtype != torch.float32:
            x_hat = x_hat.float().cpu()
        return x_hat.numpy()

    def _convolutions_for(self, latents: torch.Tensor) -> contextlib.AbstractContextManager:
        """Native CPU convolutions for a small batch of 1-D windows (:data:`CPU_NATIVE_CONV_MAX_WINDOWS`);
        oneDNN (torch's default) otherwise. The switch is process-wide while the call runs. That is safe:
        either path computes the same convolution (to float rounding), and in a decoder only 1-D
        bundles switch, whose synthesis runs on the decoding thread alone (a stereo bundle's second
        caller, the binning thread, has 2-D latents and never switches)."""
        if (self.device.type != "cpu" or latents.dim() != 4 or len(latents) > CPU_NATIVE_CONV_MAX_WINDOWS
                or not torch.backends.mkldnn.enabled):
            return contextlib.nullcontext()
        return _native_convolutions()

    def decode_side_alone(self, symbols: np.ndarray, frame_shape: Sequence[int], quality: str | None,
                          side: int = 0) -> np.ndarray:
        """Source ``side``'s view decoded alone (every other source missing) from its ``symbols``: what a
        stereo-tiled source's decoder warps into its candidates (:mod:`fusion_decoder.stereo_frames`)."""
        row: list[bytes | np.ndarray | None] = [None] * self.n_sources
        row[side] = symbols
        qualities = [[quality if i == side else None for i in range(self.n_sources)]]
        x_hat, _ = self.decode_batch([row], frame_shape=frame_shape, qualities=qualities)
        return x_hat[0, side]

    def decode_batch(self, payloads: Sequence[Sequence[bytes | np.ndarray | None]],
                     frame_shape: Sequence[int] | None = None,
                     qualities: Sequence[Sequence[str | None]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Decode B windows of one frame shape; ``payloads[b][i]`` is source i's bytes, its symbols
        already entropy-decoded (an array of the latent shape), or None if missing.

        ``qualities[b][i]``: the operating point source i's bytes were coded at (variable-rate
        bundles; None: every source at the default point).
        ``frame_shape`` (C, H, W): whole frames (fully convolutional bundles): the latent grids
        (M, ⌈H/s⌉, ⌈W/s⌉) are decoded jointly and the output is cropped back to H×W. None:
        the bundle's window shape.

        Returns:
            x_hat (B, N, C, *S) float32 and present (B, N) bool.
        """
        b, n = len(payloads), self.n_sources
        shape = self.latent_shape(0, frame_shape)
        symbols = np.zeros((b, n, *shape), dtype=np.float32)
        steps = np.ones((b, n, shape[0]), dtype=np.float32)
        present = np.zeros((b, n), dtype=bool)
        # per (source, operating point): the windows and their integer symbols, dequantised together
        # (one division per group, not per window: this runs with the GIL the event loop needs)
        groups: dict[tuple[int, str | None], tuple[list[int], list[np.ndarray]]] = {}
        for w, row in enumerate(payloads):
            if len(row) != n:
                raise ValueError(f"window {w}: {len(row)} payloads for {n} sources")
            for i, payload in enumerate(row):
                if payload is None:
                    continue
                quality = qualities[w][i] if qualities is not None else None
                if not isinstance(payload, np.ndarray):  # else entropy-decoded at the uplink's check
                    payload = self.entropy_decode(i, payload, frame_shape, quality)
                windows, arrays = groups.setdefault((i, quality), ([], []))
                windows.append(w)
                arrays.append(payload)
                present[w, i] = True
        for (i, quality), (windows, arrays) in groups.items():
            symbols[windows, i] = self.dequantise(i, np.stack(arrays), quality, batch_axes=1)  # (K, M, *L)
            steps[windows, i] = self.cell_width(i, quality)
        x_hat = self.synthesise(symbols, present, steps)
        if frame_shape:  # the encoder saw the frame padded to the stride: crop the padding away
            x_hat = x_hat[(..., *(slice(0, int(d)) for d in frame_shape[1:]))]
        return np.ascontiguousarray(x_hat), present
