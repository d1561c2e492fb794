"""The edge's side of a stereo-tiled source: a whole frame's payload and answers per tile and plane.

A right camera whose bundle source is syndrome-coded with a ``stereo-tiles`` record
(:class:`ndsc.stereo_tiles.StereoTiles`) sends per frame only each tile's escapes and plane checks
(:meth:`~ndsc.stereo_tiles.StereoTiles.frame_payload`); the decoder asks, tile by tile and plane by
plane, for accumulated-syndrome bits (or a plane's own bits) as it decodes against the left view, and
for the frame's ANS payload as the fallback (docs/bitstream.md §8). The frame's symbols are kept
until the decoder settles the window. NumPy only: the edge never imports torch.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from edge_encoder.binning import SyndromeEdgeMetrics, SyndromeResponder
from ndsc.binning import pack_bits
from ndsc.bundle import SourceInfo
from ndsc.stereo_tiles import (
    ASK_KINDS,
    PLANE_BITS,
    PRIOR_WORDS,
    PriorPlanes,
    StereoTiles,
    TileBits,
    split_plane,
    words_to_bytes,
)
from ndsc.wire import pb


class StereoTileResponder(SyndromeResponder):
    """Payloads of one stereo-tiled source and the frames kept for the decoder's requests.

    Args:
        info: the source (its binning record of kind ``stereo-tiles``).
        keep: frames kept at most (each holds its symbols, 2 bytes a symbol); beyond it the oldest
            is forgotten (a request for it then goes unanswered and the decoder estimates it).
        metrics: counters, or None.
        quality: the stream's operating point (its tables code the fallback payload; None: the default).
    """

    def __init__(
        self, info: SourceInfo, keep: int = 64, metrics: SyndromeEdgeMetrics | None = None, quality: str | None = None
    ):
        super().__init__(info, keep, metrics)
        self.coder = info.coder(quality or None)
        self.tiles = StereoTiles.of(self.spec).at(quality)
        self.spec = self.tiles.spec  # this point's planes
        self._prior = PriorPlanes(self.coder.tables, self.tiles.mapping, self.spec.n)
        self._recent: OrderedDict[tuple[int, int], TileBits] = OrderedDict()  # the tiles being decoded

    def encode(self, window: int, symbols: np.ndarray) -> bytes:
        """The frame's payload (``symbols``: its latents (C, h, w)); the symbols are kept until settled."""
        latents = np.asarray(symbols)
        payload = self.tiles.frame_payload(latents)
        with self._lock:  # kept: the frame's symbols (the base class keeps a window's packed planes)
            self._kept[window] = latents.astype(np.int16)
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)
        if self.metrics:
            self.metrics.bit("initial").inc(8 * len(payload))
        return payload

    def forget_below(self, window: int) -> None:
        super().forget_below(window)
        with self._lock:
            for key in [k for k in self._recent if k[0] < window]:
                del self._recent[key]

    def _tile(self, window: int, latents: np.ndarray, tile: int) -> TileBits:
        key = (window, tile)
        with self._lock:
            bits = self._recent.get(key)
        if bits is None:
            grid = self.tiles.grid(latents.shape)
            bits = self.tiles.encode_tile(grid.tile(latents.astype(np.int64), tile), grid.padding(tile))
            with self._lock:
                self._recent[key] = bits
                while len(self._recent) > 4:
                    self._recent.popitem(last=False)
        return bits

    def answer(self, r: pb.SyndromeRequest) -> pb.SyndromeBlock | None:
        """The block that answers ``r`` (accumulated bits [first, end) of a tile's plane, the plane's
        own bits, the plane coded with the prior tables, or the frame's ANS payload), or None for
        a frame no longer kept or a request that does not fit the frame (a decoder bug: nothing sensible
        to send)."""
        with self._lock:
            latents = self._kept.get(r.window)
        n = self.spec.n
        grid = None if latents is None else self.tiles.grid(latents.shape)
        fits = grid is not None and (
            r.direct or (r.plane < ASK_KINDS * grid.count * self.tiles.planes and r.first_bit < r.end_bit <= n)
        )
        if latents is None or grid is None or not fits:
            if self.metrics:
                self.metrics.request("forgotten").inc()
            return None
        if r.direct:
            bits = self.coder.encode(latents.reshape(latents.shape[0], -1).astype(np.int64))
        else:
            tile, plane, kind = split_plane(r.plane, grid.count, self.tiles.planes)
            held = self._tile(r.window, latents, tile)
            if kind == PRIOR_WORDS:  # the whole plane, coded with the stream's prior tables (§8)
                bits = words_to_bytes(held.prior_coded(plane, self._prior))
            else:
                sent = held.planes[plane] if kind == PLANE_BITS else held.accumulated[plane][self.spec.order]
                bits = pack_bits(sent[r.first_bit : r.end_bit])
        return self._reply(r, bits)
