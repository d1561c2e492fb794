"""The decoder's side of a stereo-tiled source: a whole right frame decoded tile by tile against the left.

:class:`StereoFrameDecoder` has :class:`fusion_decoder.belief.SyndromeDecoder`'s surface (``attempt``,
``take``, ``check_direct``), so the binning stage holds a frame, runs attempts in its worker thread
and sends each :class:`~fusion_decoder.belief.Request` to the right camera's stream exactly as for
a window of a syndrome-coded sensor. An attempt:

1. decodes the left view alone (the joint decoder with the right view missing), once per frame;
2. per tile in raster order: the candidates' centres (the left warped by each candidate disparity,
   through the right encoder's ONNX analysis, times the quality point's gains), then
   :func:`fusion_decoder.stereo_tiles.decode_tile_steps` with ``search="ascend"``; every ask for bits
   the decoder already holds is answered at once (prefixes: BP on fewer bits, to learn what a plane
   needed), and the first ask past them ends the attempt with a request for exactly the missing bits;
3. after each tile the per-channel scales are refitted (:class:`~fusion_decoder.stereo_tiles.AdaptiveScales`),
   and the LLR calibration and request sizer learn from its planes (per frame: nothing crosses frames
   or groups).

The frame's symbols are its tiles' with the padding past its edge cut off. What this costs on a CPU
(seconds a tile) is in docs/stereo.md; the GPU path decodes the same steps with torch likelihoods.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from fusion_decoder.belief import BP, Outcome, Request, default_bp
from fusion_decoder.stereo_tiles import (AdaptiveScales, Ask, LlrCalibration, PlaneModes, PriorAnswer, RequestSizer,
                                         TileResult, decode_tile_steps)
from ndsc.binning import SyndromeError, plane_check
from ndsc.bundle import Bundle
from ndsc.stereo_tiles import (PLANE_BITS, PRIOR_WORDS, SYNDROME_BITS, PriorPlanes, StereoTiles, TileGrid,
                               TileHeader, bytes_to_words, flat_plane, split_plane)

#: each request after a plane's first asks for this fraction of the bits held, when more than 8
#: (request_grid): 1.7–3.4× fewer round trips than 8 at a time, measured in docs/stereo.md
STEP_FRACTION = 1 / 64


@dataclass
class FrameState:
    """What the decoder holds of one right frame (see the module doc).

    ``requests``, ``pending``, ``direct`` and ``iterations`` are what the binning stage reads and
    writes for every syndrome source; the rest is this decoder's."""

    headers: list[TileHeader]
    grid: TileGrid
    tiles: StereoTiles  # the record at the frame's point (its planes)
    frame_shape: tuple[int, ...]
    side_quality: str | None
    quality: str | None
    requests: int = 0
    pending: Request | None = None
    direct: bytes | None = None
    direct_symbols: np.ndarray | None = None  # the direct payload's, checked when it arrived (read_direct)
    iterations: int = 0
    tile: int = 0
    steps: Any = None  # the current tile's decode_tile_steps generator
    waiting: Ask | None = None  # what it asked for and the decoder did not hold
    held: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (tile, plane) → accumulated bits
    raw: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (tile, plane) → the plane's bits
    prior: dict[tuple[int, int], PriorAnswer] = field(default_factory=dict)  # (tile, plane) → prior-coded plane, read
    decoded: list[np.ndarray] = field(default_factory=list)  # decoded tiles' symbols
    results: list[TileResult] = field(default_factory=list)
    left: np.ndarray | None = None  # the left view decoded alone (3, H, W)
    centres: np.ndarray | None = None  # the current tile's (D, C, t²)
    scales: AdaptiveScales | None = None
    calibration: LlrCalibration | None = None
    sizer: RequestSizer | None = None
    modes: PlaneModes | None = None


def _bp_for(device: str | None) -> BP:
    """BP on ``device``: torch float32 on a GPU (many-problem graphs, :mod:`fusion_decoder.belief_torch`),
    else the ``ldpc`` package's on the CPU (faster there than torch's)."""
    if device is None or not str(device).startswith("cuda"):
        return default_bp()
    from functools import partial

    import torch

    from fusion_decoder.belief_torch import bp_torch

    return partial(bp_torch, device=device, dtype=torch.float32)


class StereoFrameDecoder:
    """Decodes one stereo-tiled source of a bundle (the right view) given the side source (the left).

    Args:
        bundle: the bundle; ``source`` its stereo-tiled source.
        left_view: (left symbols (M, h, w), frame shape (C, H, W), the left's quality) → the left view
            decoded alone (C, H, W), unrounded (the fusion decoder's runtime with the right missing).
        bp: the belief-propagation function (default: :func:`fusion_decoder.belief.default_bp` on the
            CPU; :func:`fusion_decoder.belief_torch.bp_torch` in float32 with a CUDA ``device``).
        device: where the likelihoods (and by default BP) run in torch (None: NumPy and the ``ldpc``
            package on the CPU).
    """

    def __init__(self, bundle: Bundle, source: int, left_view: Callable[[np.ndarray, tuple[int, ...], str | None], np.ndarray],
                 bp: BP | None = None, device: str | None = None):
        import onnxruntime as ort

        info = bundle.sources[source]
        assert info.binning is not None
        self.info = info
        self.spec = info.binning
        self.tiles = StereoTiles.of(self.spec)
        self.side_sources = self.spec.side_sources
        self.coder = info.coder()
        self._coders = {q: info.coder(q) for q in info.quality_names}
        self.left_view = left_view
        self.device = device
        self.bp = bp or _bp_for(device)
        self.stride = int(info.frame_stride or 1)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self._analysis = ort.InferenceSession(str(bundle.file(info.encoder_file)), sess_options=opts,
                                              providers=["CPUExecutionProvider"])
        self._input = self._analysis.get_inputs()[0].name

    def point(self, quality: str | None) -> str | None:
        """The operating point's name a stream's ``quality`` stands for (None: a fixed-rate source)."""
        point = self.info.quality(quality or None)
        return point.name if point is not None else None

    def parse(self, payload: bytes, latent_shape: tuple[int, ...], quality: str | None) -> list[TileHeader]:
        """A frame's payload → its tiles' headers at the frame's point (SyndromeError if it does not fit)."""
        return self.tiles.at(self.point(quality)).parse_payload(payload, latent_shape)

    def start(self, headers: list[TileHeader], latent_shape: tuple[int, ...], frame_shape: tuple[int, ...],
              quality: str | None, side_quality: str | None) -> FrameState:
        """The state of a frame from its parsed payload (:meth:`StereoTiles.parse_payload`)."""
        name = self.point(quality)
        tiles = self.tiles.at(name)
        grid = tiles.grid(latent_shape)
        if len(headers) != grid.count:
            raise SyndromeError(f"{len(headers)} tile headers for a frame of {grid.count} tiles")
        return FrameState(headers, grid, tiles, tuple(frame_shape), side_quality, name)

    # ----- the side: candidate centres -------------------------------------------------
    def _scales(self, quality: str | None) -> np.ndarray:
        scales = self.tiles.scales
        key = self.point(quality) or next(iter(scales))  # a fixed-rate source's scales are keyed ""
        if key not in scales:
            raise SyndromeError(f"no calibrated scales for quality point {quality!r}")
        return np.asarray(scales[key], np.float64)

    def centres(self, left: np.ndarray, grid: TileGrid, tile: int, quality: str | None) -> np.ndarray:
        """(D, C, t²) the side per candidate disparity for ``tile``: the left view's pixels of the tile's
        rows, warped by d, through the right encoder's analysis, times the point's gains; zero at the
        padding past the frame's edge."""
        import torch

        from models.side_information import warp_rows_columns
        from ndsc.sources.images import pad_to_multiple

        s, t = self.stride, grid.t
        rows, cols = grid.extent(tile)
        y0, y1 = rows.start * s, min(rows.stop * s, left.shape[1])
        x0, x1 = cols.start * s, min(cols.stop * s, left.shape[2])
        w = left.shape[-1]
        step = self.tiles.disparity_step
        candidates = np.arange(0.0, np.floor(w * self.tiles.max_disparity) + step / 2, step)
        strip = torch.from_numpy(np.ascontiguousarray(left[:, y0:y1], dtype=np.float32))[None]
        gain = np.asarray(self.info.gain(quality), np.float64).reshape(1, -1, 1, 1)
        out = np.zeros((len(candidates), grid.channels, t, t))
        for start in range(0, len(candidates), 16):
            ds = torch.tensor(candidates[start:start + 16], dtype=torch.float32)
            views = warp_rows_columns(strip.expand(len(ds), -1, -1, -1), ds, x0, x1, -1).numpy()
            y = self._run_analysis(np.stack([pad_to_multiple(v, (s, s)) for v in views])) * gain
            out[start:start + len(ds), :, :y.shape[2], :y.shape[3]] = y
        return out.reshape(len(candidates), grid.channels, t * t)

    def _run_analysis(self, images: np.ndarray) -> np.ndarray:
        (y,) = self._analysis.run(None, {self._input: np.ascontiguousarray(images, dtype=np.float32)})
        return np.asarray(y, np.float64)

    # ----- attempts ----------------------------------------------------------------------
    def attempt(self, state: FrameState, side: np.ndarray | None) -> Outcome:
        """Decode as far as the bits held allow: the frame's symbols, or the request that comes next.
        ``side``: the left view's symbols (M, h, w), None when it is missing (then only the direct
        payload can decode the frame)."""
        if state.direct is not None:
            symbols = state.direct_symbols if state.direct_symbols is not None else self.check_direct(state, state.direct)
            return Outcome(symbols.reshape(-1), None, 0)
        if side is None:
            return Outcome(None, Request(direct=True), 0)
        if state.left is None:
            state.left = np.asarray(self.left_view(side, state.frame_shape, state.side_quality), np.float64)
            calibrated = self._scales(state.quality)
            state.scales = AdaptiveScales(calibrated, self.tiles.adapt_prior_blocks)
            state.calibration = LlrCalibration(state.tiles.planes)
            state.sizer = RequestSizer(state.tiles.planes)
            # a record from before the integer prior format (§8) never gets a prior-coded plane asked
            state.modes = PlaneModes(PriorPlanes(self._coder(state).tables, state.tiles.mapping, self.spec.n),
                                     state.tiles.planes, self.spec.check_bits) if state.tiles.prior_coding else None
        answer = None
        if state.waiting is not None:  # the answer to the last request has arrived (take)
            answer = self._held_answer(state, state.waiting)
            if answer is None:  # not answered yet: ask again
                return Outcome(None, self._request(state, state.waiting), 0)
            state.waiting = None
        while True:
            if state.steps is None:
                if state.tile == state.grid.count:
                    return Outcome(state.grid.assemble(state.decoded).reshape(-1), None, 0)
                state.centres = self.centres(state.left, state.grid, state.tile, state.quality)
                assert state.scales is not None
                state.steps = decode_tile_steps(
                    state.tiles.spec, state.headers[state.tile], state.centres, state.scales.current, state.tiles.mapping,
                    self.bp, state.calibration, state.modes, state.sizer, STEP_FRACTION, self.device, search="ascend")
                answer = None
            try:
                ask = state.steps.send(answer)
            except StopIteration as stop:
                self._finish_tile(state, stop.value)
                continue
            answer = self._held_answer(state, ask)
            if answer is None:
                state.waiting = ask
                return Outcome(None, self._request(state, ask), 0)

    def _finish_tile(self, state: FrameState, result: TileResult) -> None:
        symbols = result.symbols.reshape(state.grid.channels, -1)
        known = np.zeros(symbols.shape[1], bool)
        pad = state.grid.padding(state.tile)
        known[np.unique(pad % symbols.shape[1])] = True  # padding covers whole blocks
        assert state.scales is not None and state.centres is not None
        state.scales.update(symbols, state.centres, known)
        state.decoded.append(result.symbols)
        state.results.append(result)
        for held in (state.held, state.raw, state.prior):  # the finished tile's bits are not needed again
            for k in [k for k in held if k[0] == state.tile]:
                del held[k]
        state.steps, state.centres = None, None
        state.tile += 1

    def _held_answer(self, state: FrameState, ask: Ask) -> np.ndarray | PriorAnswer | None:
        key = (state.tile, ask.plane)
        if ask.kind == "raw":
            return state.raw.get(key)
        if ask.kind == "prior":
            return state.prior.get(key)
        held = state.held.get(key)
        return held[:ask.count] if held is not None and len(held) >= ask.count else None

    def _request(self, state: FrameState, ask: Ask) -> Request:
        if state.requests >= self.spec.max_requests:
            return Request(direct=True)
        count = state.grid.count
        planes = state.tiles.planes
        if ask.kind in ("raw", "prior"):  # the whole plane, as its bits or coded with the prior tables
            kind = PLANE_BITS if ask.kind == "raw" else PRIOR_WORDS
            return Request(flat_plane(state.tile, ask.plane, kind, count, planes), 0, self.spec.n)
        held = state.held.get((state.tile, ask.plane))
        first = 0 if held is None else len(held)
        return Request(flat_plane(state.tile, ask.plane, SYNDROME_BITS, count, planes), first, ask.count)

    def take(self, state: FrameState, request: Request, bits_or_payload: bytes | np.ndarray | PriorAnswer) -> None:
        """Record the answer to ``request`` (accumulated bits, a plane's bits, or the direct payload)."""
        if request.direct:
            state.direct = bytes(bits_or_payload)  # type: ignore[arg-type]
            return
        tile, plane, kind = split_plane(request.plane, state.grid.count, state.tiles.planes)
        if kind == PRIOR_WORDS:
            assert isinstance(bits_or_payload, PriorAnswer)  # read by unpack: decoded and checked
            state.prior[(tile, plane)] = bits_or_payload
            return
        bits = np.asarray(bits_or_payload, np.uint8)
        if kind == PLANE_BITS:
            state.raw[(tile, plane)] = bits
            return
        old = state.held.get((tile, plane))
        state.held[(tile, plane)] = bits if old is None else np.concatenate([old, bits])

    def _coder(self, state: FrameState):
        """The entropy coder of the frame's point (its tables code the fallback and the prior planes)."""
        return self._coders.get(state.quality, self.coder) if state.quality else self.coder

    def read_direct(self, state: FrameState, payload: bytes) -> bytes:
        """:meth:`check_direct` as the answer arrives, keeping the symbols for the attempt that
        follows (a whole frame is not entropy-decoded twice); returns ``payload``."""
        state.direct_symbols = self.check_direct(state, payload)
        return payload

    def check_direct(self, state: FrameState, payload: bytes) -> np.ndarray:
        """The frame's symbols (C, h, w) from its ANS payload; SyndromeError if they contradict a tile's
        plane checks (a forged or corrupt check or payload: refused rather than output either way)."""
        grid = state.grid
        latents = self._coder(state).decode(payload, grid.height * grid.width).reshape(grid.channels, grid.height, grid.width)
        mapping = state.tiles.mapping
        for i, header in enumerate(state.headers):
            index = mapping.index(grid.tile(latents, i).reshape(-1))
            for k, check in header.checks.items():
                if plane_check(((index >> k) & 1).astype(np.uint8), self.spec.check_bits) != check:
                    raise SyndromeError(f"the direct payload contradicts tile {i}'s check of plane {k}")
        return latents

    def unpack(self, request: Request, data: bytes, state: FrameState) -> np.ndarray | PriorAnswer:
        """A block's content for ``request``: bits (:func:`ndsc.binning.unpack_bits`) or, for a
        prior-coded plane, the plane decoded from its 32-bit words and checked against the tile's
        check (:class:`~fusion_decoder.stereo_tiles.PriorAnswer`). Raises SyndromeError for a block
        that does not fit: the stage refuses it as it arrives."""
        from ndsc.binning import unpack_bits

        tile, plane, kind = split_plane(request.plane, state.grid.count, state.tiles.planes)
        if kind == PRIOR_WORDS:
            ask = state.waiting
            if ask is None or ask.read is None or (state.tile, ask.plane) != (tile, plane):
                raise SyndromeError(f"no prior-coded plane {plane} of tile {tile} is awaited")
            return ask.read(bytes_to_words(data))
        return unpack_bits(data, request.end - request.first)
