"""Stereo tiles: what the right camera's edge and the decoder share to syndrome-code a frame's symbols.

A frame's integer symbols (C, h, w) are cut into tiles of ``tile_blocks`` × ``tile_blocks`` transform
blocks (raster order; the last row and column may be smaller). In a tile, symbols become indices
0 … 2^B − 1 (:class:`IndexMap`: zigzag by default), split into B bit planes of n = C · blocks bits;
per plane the edge can send any prefix of the plane's accumulated syndrome (LDPC-accumulate,
:mod:`ndsc.binning`, with the checks :func:`spread_checks`) and the plane's CRC-16. Symbols outside
the index range are *escapes*, sent raw up front. The decoder's side is
:mod:`fusion_decoder.stereo_tiles`. NumPy (and constriction) only: the edge imports this.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from ndsc.binning import CHECK_BITS as CHECK_WIDTHS
from ndsc.binning import SYNDROME, PlanePlan, SyndromeError, SyndromeSpec, plane_check

#: bits of each plane's CRC by default (CRC-16/XMODEM, :func:`ndsc.binning.plane_check`)
CHECK_BITS = 16
#: accumulated-syndrome bits per request after the first: a plane pays half a step on average, so 8
#: rather than 32 saved 2.9 points of the ANS bits on a row of Art (17.9 → 20.8 %), for 4× the requests
STEP_BITS = 8
#: BP iterations per attempt
BP_ITERATIONS = 100
#: bits of a tile's escape count, and of each escape's value (its position costs ⌈log2 n⌉ bits)
ESCAPE_COUNT_BITS, ESCAPE_VALUE_BITS = 16, 16


def spread_checks(n: int, seed: int = 0) -> tuple[tuple[int, ...], ...]:
    """A degree-3 n × n parity-check matrix (n divisible by 4) whose every bit has its three rows in
    three different quarters of the rows, each row holding 3 bits.

    Why not :func:`ndsc.binning.random_checks`: there a bit's rows can lie a few rows apart, and the
    merged code of the accumulate (blocks of consecutive rows) then keeps both in one block, where they
    cancel, until the block boundary falls between them, which can take a third of the plane's bits.
    Two such bits in one block form a weight-2 codeword: BP converges to a word 2 bits off, the CRC
    rejects it, and the decoder keeps requesting (measured on the skimage pair: 1224 bits for a plane
    whose LLR cross-entropy was 318). The first four transmitted positions (n/4·k − 1) cut the rows
    into the quarters, so from 4 bits on every bit has degree 3 in every merged code.
    """
    if n % 4:
        raise ValueError("n must be divisible by 4")
    rng = np.random.default_rng([seed, n, 4])
    quarter = n // 4
    # bit i skips quarter skip[i]; each quarter is skipped by n/4 bits, so it gets 3n/4 sockets, 3 a row
    skip = rng.permutation(np.arange(n) % 4)
    table: list[list[int]] = [[] for _ in range(n)]
    for q in range(4):
        bits = np.flatnonzero(skip != q)
        rows = q * quarter + rng.permutation(np.arange(bits.size) % quarter)
        for r, b in zip(rows.tolist(), bits.tolist()):
            table[r].append(b)
    return tuple(tuple(sorted(t)) for t in table)


def tile_spec(n: int, index_bits: int, seed: int = 0, check_bits: int = CHECK_BITS) -> SyndromeSpec:
    """A syndrome record for tiles of ``n`` symbols: every plane syndrome coded with a CRC of
    ``check_bits`` (16, or 32 for a decoder such as :func:`fusion_decoder.belief.bp_osd` that returns
    a syndrome-consistent word at every attempt), the code :func:`spread_checks` (degree-3, n × n)."""
    return SyndromeSpec(
        side_sources=(0,),
        offset=-(1 << (index_bits - 1)),
        index_bits=index_bits,
        planes=tuple(PlanePlan(k, SYNDROME, 1) for k in range(index_bits)),
        checks=spread_checks(n, seed),
        step_bits=STEP_BITS,
        max_requests=1 << 30,
        bp_iterations=BP_ITERATIONS,
        conditional={"kind": "table", "side_offset": 0, "probs": [[1.0] * (1 << index_bits)]},
        check_bits=check_bits,
    )


@dataclass
class TileBits:
    """What the edge holds for one tile: its planes, their accumulated syndromes and CRCs, the escapes."""

    spec: SyndromeSpec
    planes: np.ndarray  # (B, n) uint8, plane k = bit k of the index
    accumulated: np.ndarray  # (B, n) uint8
    checks: dict[int, int]
    escape_positions: np.ndarray
    escape_values: np.ndarray

    def request(self, plane: int, count: int) -> np.ndarray:
        """The first ``count`` accumulated bits of ``plane`` in transmission order."""
        return self.accumulated[plane][self.spec.order[:count]]

    def prior_coded(self, plane: int, prior: "PriorPlanes") -> np.ndarray:
        """``plane``'s bits (escapes left out: the decoder knows them) coded with the prior tables'
        P(bit | the planes above), which the edge computes from its own symbols: the 32-bit words sent
        (docs/bitstream.md §8, prior-coded planes)."""
        index = (self.planes.astype(np.int64) << np.arange(len(self.planes))[:, None]).sum(axis=0)
        lo = (index >> (plane + 1)) << (plane + 1)
        free = np.ones(self.spec.n, bool)
        free[self.escape_positions] = False
        weights = prior.weights0(lo, lo + (1 << (plane + 1)) - 1, plane)[free]
        return code_plane_bits(self.planes[plane][free], weights)

    @property
    def escape_bits(self) -> int:
        return ESCAPE_COUNT_BITS + len(self.escape_positions) * (int(np.ceil(np.log2(self.spec.n))) + ESCAPE_VALUE_BITS)


def encode_tile(spec: SyndromeSpec, symbols: np.ndarray, mapping: "IndexMap") -> TileBits:
    """The edge's side of one tile (``symbols``: (C, blocks) integers, flattened channel-major)."""
    q = np.asarray(symbols, np.int64).reshape(-1)
    j = mapping.index(q)
    planes = ((j[None, :] >> np.arange(mapping.bits)[:, None]) & 1).astype(np.uint8)
    escaped = np.flatnonzero(mapping.escaped(q))
    return TileBits(
        spec,
        planes,
        np.stack([spec.accumulated(p) for p in planes]),
        {k: plane_check(planes[k], spec.check_bits) for k in range(mapping.bits)},
        escaped,
        q[escaped],
    )


def _laplace_interval(a: np.ndarray, b: np.ndarray, mu: np.ndarray, s: np.ndarray) -> np.ndarray:
    """P(a < X < b) for X ~ Laplace(mu, s), stable in the tails (a or b may be ±inf).

    Three transcendental calls an element (this is most of the decoder's time): an interval on one
    side of the centre is its nearer end's tail times (1 − e^−(zb − za)), in expm1 so that narrow
    intervals keep their precision; an interval holding the centre is 1 minus its two tails."""
    za, zb = (a - mu) / s, (b - mu) / s
    with np.errstate(over="ignore", invalid="ignore"):
        ea, eb = np.exp(-np.abs(za)), np.exp(-np.abs(zb))
        tail = 0.5 * np.maximum(ea, eb) * -np.expm1(za - zb)
        p = np.where((za >= 0) | (zb <= 0), tail, 1.0 - 0.5 * (ea + eb))
    return np.where(p > 0, p, 0.0)  # also maps a NaN (an empty interval at ±inf) to 0


@dataclass(frozen=True)
class IndexMap:
    """Symbols ↔ indices 0 … 2^B − 1, and the probability of an index interval [lo, hi] given d.

    * ``offset``: j = q + 2^(B−1) (as :mod:`ndsc.binning`; the first tail in index 0, the last in
      2^B − 1). Decoded most significant first, its first plane is the sign — for the many near-zero
      symbols a coin flip, decoded while the disparity posterior is still uniform.
    * ``zigzag``: j = 2q for q ≥ 0, −2q − 1 for q < 0. Its high planes are the magnitude of the large
      coefficients (which tell the disparity apart), and an index interval is at most two symbol
      intervals (one per sign). Escapes: |q| outside the range, sent raw.
    """

    bits: int
    kind: str = "zigzag"

    @property
    def top(self) -> int:
        return (1 << self.bits) - 1

    def escaped(self, q: np.ndarray) -> np.ndarray:
        half = 1 << (self.bits - 1)
        return (q < -half) | (q > half - 1)

    def index(self, q: np.ndarray) -> np.ndarray:
        half = 1 << (self.bits - 1)
        q = np.clip(np.asarray(q, np.int64), -half, half - 1)
        return q + half if self.kind == "offset" else np.where(q >= 0, 2 * q, -2 * q - 1)

    def value(self, j: np.ndarray) -> np.ndarray:
        j = np.asarray(j, np.int64)
        return j - (1 << (self.bits - 1)) if self.kind == "offset" else np.where(j % 2 == 0, j // 2, -(j + 1) // 2)

    def prob(self, lo: np.ndarray, hi: np.ndarray, mu: np.ndarray, s: np.ndarray) -> np.ndarray:
        """P_d(index in [lo, hi]) under a Laplacian (mu, s) of the symbol; 0 where hi < lo."""
        if self.kind == "offset":
            half = 1 << (self.bits - 1)
            a = np.where(lo <= 0, -np.inf, lo - half - 0.5)
            b = np.where(hi >= self.top, np.inf, hi - half + 0.5)
            return _laplace_interval(a, b, mu, s) * (hi >= lo)
        # non-negative symbols: 2q in [lo, hi]; negative ones: −2q − 1 in [lo, hi]
        pa, pb = -((-lo) // 2), hi // 2
        na, nb = -((hi + 1) // 2), -((lo + 2) // 2)  # ceil(−(hi+1)/2), floor(−(lo+1)/2)
        nb = np.minimum(nb, -1)
        pos = _laplace_interval(pa - 0.5, pb + 0.5, mu, s) * (pb >= pa)
        neg = _laplace_interval(na - 0.5, nb + 0.5, mu, s) * (nb >= na)
        return pos + neg


#: precision of a prior-coded bit's weights (docs/bitstream.md §2: weights out of 2^24)
PRIOR_PRECISION = 24
#: the least weight either value of a prior-coded bit gets (2^-20 of the total)
PRIOR_MIN_WEIGHT = 1 << 4
#: ``conditional.prior_coding`` of a record whose prior-coded planes are the integer §8 format; a
#: record without it predates that format, and its decoder never asks for a prior-coded plane
PRIOR_CODING = "ans24-int"


def _bit_models(weights0: np.ndarray) -> np.ndarray:
    """constriction's Categorical parameters whose quantisation is exactly (w0, 2^24 − w0): as the
    table models of :func:`ndsc.entropy.categorical`, each weight − 1, so the scale is exactly 1."""
    w0 = np.asarray(weights0, np.int64)
    return np.stack([w0 - 1, (1 << PRIOR_PRECISION) - w0 - 1], axis=1).astype(np.float64)


def code_plane_bits(bits: np.ndarray, weights0: np.ndarray) -> np.ndarray:
    """``bits`` coded by §3's rANS coder, bit i with weights (``weights0[i]``, 2^24 − ``weights0[i]``)
    for (0, 1): the coder's 32-bit words, possibly none (docs/bitstream.md §8)."""
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(
        np.asarray(bits, np.int32), constriction.stream.model.Categorical(perfect=False), _bit_models(weights0)
    )
    return np.asarray(coder.get_compressed(), np.uint32)


def decode_plane_bits(words: np.ndarray, weights0: np.ndarray) -> np.ndarray:
    """Inverse of :func:`code_plane_bits` given the same ``weights0``. Raises SyndromeError for words
    that are not such a plane (a last word of 0, or words left after the last bit)."""
    import constriction

    try:
        coder = constriction.stream.stack.AnsCoder(np.asarray(words, np.uint32))
        bits = coder.decode(constriction.stream.model.Categorical(perfect=False), _bit_models(weights0))
    except (ValueError, AssertionError) as exc:
        raise SyndromeError(f"prior-coded plane does not decode: {exc}") from exc
    if not coder.is_empty():
        raise SyndromeError("prior-coded plane has words left after its last bit")
    return np.asarray(bits, np.uint8)


class PriorPlanes:
    """P(bit k = 0 | index in [lo, hi]) under the right view's static tables (no side information): the
    chain rule splits a symbol's table bits into its planes' bits, so coding a plane with these
    probabilities costs what ANS would have spent on that plane. Both sides compute them, the edge
    from its own symbols' higher planes and the decoder from the planes it decoded, in integers
    only, so an edge in any language gets the same weights (docs/bitstream.md §8).

    ``tables``: one :class:`ndsc.entropy.ChannelTable` per channel; positions are channel-major with
    ``n // len(tables)`` per channel. An index's mass is its value's table frequency (at least 1);
    an index whose value is outside the table's range gets ⌊escape frequency / such indices⌋ (at
    least 1)."""

    def __init__(self, tables, mapping: "IndexMap", n: int):
        values = mapping.value(np.arange(mapping.top + 1))
        mass = np.empty((len(tables), mapping.top + 1), np.int64)
        for c, table in enumerate(tables):
            freqs = np.asarray(table.freqs, np.int64)
            inside = (values >= table.offset) & (values <= table.offset + len(freqs) - 2)
            escape_share = max(1, int(freqs[-1]) // max(1, int((~inside).sum())))
            mass[c] = np.maximum(
                np.where(inside, freqs[np.clip(values - table.offset, 0, len(freqs) - 1)], escape_share), 1
            )
        # totals ≤ 2^16 indices × 2^16: a difference shifted by 24 bits stays below 2^63
        self.cum = np.concatenate([np.zeros((len(tables), 1), np.int64), np.cumsum(mass, axis=1)], axis=1)
        self.channel = np.repeat(np.arange(len(tables)), n // len(tables))

    def weights0(self, lo: np.ndarray, hi: np.ndarray, k: int) -> np.ndarray:
        """Per position (flat, channel-major) bit k's weight of 0 out of 2^24 given its index
        interval [lo, hi]: ⌊2^24 · mass[lo, mid) / mass[lo, hi]⌋, mid = min(lo + 2^k, hi + 1),
        clipped to [2^4, 2^24 − 2^4]."""
        lo, hi = np.asarray(lo, np.int64).reshape(-1), np.asarray(hi, np.int64).reshape(-1)
        mid = np.minimum(lo + (1 << k), hi + 1)
        cum, ch = self.cum, self.channel
        w0 = ((cum[ch, mid] - cum[ch, lo]) << PRIOR_PRECISION) // (cum[ch, hi + 1] - cum[ch, lo])
        return np.clip(w0, PRIOR_MIN_WEIGHT, (1 << PRIOR_PRECISION) - PRIOR_MIN_WEIGHT)

    def p0(self, lo: np.ndarray, hi: np.ndarray, k: int) -> np.ndarray:
        """:meth:`weights0` as probabilities (what the decoder's cost estimates use)."""
        return self.probabilities(self.weights0(lo, hi, k))

    @staticmethod
    def probabilities(weights0: np.ndarray) -> np.ndarray:
        """Weights of 0 out of 2^24 as P(bit = 0) (exact in float64)."""
        return np.asarray(weights0) / float(1 << PRIOR_PRECISION)


# ---- whole frames: the live codec (docs/bitstream.md §8) ---------------------------------------------

#: the binning record's ``conditional.kind`` of a stereo-tiled source
STEREO_TILES = "stereo-tiles"
#: symbol value range of an escape (sent as a signed 16-bit integer)
ESCAPE_VALUE_RANGE = (-(1 << 15), (1 << 15) - 1)


@dataclass(frozen=True)
class TileHeader:
    """What the decoder has of a tile before any request: its plane CRCs and its *known* positions —
    the escapes (sent) and the padding past the frame's edge (zero symbols, implied by the frame's
    size). ``escape_bits``: bits the payload spent on the escapes (a statistic)."""

    checks: dict[int, int]
    escape_positions: np.ndarray
    escape_values: np.ndarray
    escape_bits: int

    @classmethod
    def of(cls, edge: TileBits) -> "TileHeader":
        return cls(edge.checks, edge.escape_positions, edge.escape_values, edge.escape_bits)


@dataclass(frozen=True)
class StereoTiles:
    """A stereo-tiled source's record (the binning record's ``conditional``, kind :data:`STEREO_TILES`)
    with its syndrome record ``spec`` (the code of one full tile, n = C · ``tile_blocks``²).

    Fields of ``conditional``: ``tile_blocks``, ``mapping`` (``zigzag`` or ``offset``), and the
    decoder's side-information settings, which the edge ignores: ``disparity_step`` (px between
    candidate disparities), ``max_disparity`` (the largest candidate, a fraction of the frame's width),
    ``scales`` (per quality point, the per-channel Laplacian scales fitted at export) and
    ``adapt_prior_blocks`` (weight of those scales, in blocks, against the residuals decoded so far),
    and ``prior_coding`` (:data:`PRIOR_CODING` where planes may be coded with the prior tables, §8;
    absent in records from before that format: their decoder never asks for such a plane).
    """

    spec: SyndromeSpec
    tile_blocks: int
    mapping: "IndexMap"
    disparity_step: float
    max_disparity: float
    scales: dict[str, tuple[float, ...]]
    adapt_prior_blocks: float
    index_bits: dict[str, int]
    prior_coding: bool = False

    @classmethod
    def of(cls, spec: SyndromeSpec) -> "StereoTiles":
        """Raises SyndromeError for a record that is not a consistent stereo-tiles record."""
        cond = spec.conditional
        try:
            t = int(cond["tile_blocks"])
            kind = str(cond.get("mapping", "zigzag"))
            step, top = float(cond["disparity_step"]), float(cond["max_disparity"])
            scales = {str(q): tuple(float(v) for v in s) for q, s in dict(cond["scales"]).items()}
            prior = float(cond.get("adapt_prior_blocks", 64.0))
            by_point = {str(q): int(b) for q, b in dict(cond.get("index_bits", {})).items()}
            coding = cond.get("prior_coding")
        except (KeyError, TypeError, ValueError) as exc:
            raise SyndromeError(f"bad stereo-tiles record: {exc!r}") from exc
        if t < 1 or spec.n % (t * t) or kind not in ("zigzag", "offset"):
            raise SyndromeError(f"tile_blocks {t} does not divide n = {spec.n}, or unknown mapping {kind!r}")
        if not (step > 0 and 0 < top <= 1 and prior >= 0) or not scales:
            raise SyndromeError("disparity_step > 0, 0 < max_disparity <= 1, adapt_prior_blocks >= 0 and scales needed")
        channels = spec.n // (t * t)
        if any(len(v) != channels or not all(np.isfinite(v)) or min(v) <= 0 for v in scales.values()):
            raise SyndromeError(f"scales must be {channels} positive values per quality point")
        if spec.n > 1 << 16 or spec.check_bits not in CHECK_WIDTHS[1:]:
            raise SyndromeError("a tile holds at most 65 536 symbols, and its planes carry a 16- or 32-bit check")
        if spec.offset != -(1 << (spec.index_bits - 1)):
            raise SyndromeError("offset must be -2^(index_bits-1)")
        if not all(2 <= b <= 15 for b in by_point.values()):
            raise SyndromeError("index_bits per point must be 2 … 15")
        if coding not in (None, PRIOR_CODING):
            raise SyndromeError(f"unknown prior_coding {coding!r} (this decoder reads {PRIOR_CODING!r})")
        return cls(spec, t, IndexMap(spec.index_bits, kind), step, top, scales, prior, by_point, coding is not None)

    def at(self, quality: str | None) -> "StereoTiles":
        """The record as frames at operating point ``quality`` use it: its own number of planes where
        ``conditional.index_bits`` names one for the point (finer points have larger symbols; with
        too few planes their escapes cost more than binning saves), else the record's."""
        bits = self.index_bits.get(quality or "", self.spec.index_bits)
        if bits == self.spec.index_bits:
            return self
        spec = replace(
            self.spec,
            index_bits=bits,
            offset=-(1 << (bits - 1)),
            planes=tuple(PlanePlan(k, SYNDROME, 1) for k in range(bits)),
        )
        return replace(self, spec=spec, mapping=IndexMap(bits, self.mapping.kind))

    @property
    def channels(self) -> int:
        return self.spec.n // (self.tile_blocks * self.tile_blocks)

    @property
    def planes(self) -> int:
        return self.spec.index_bits

    def grid(self, latent_shape: tuple[int, ...]) -> "TileGrid":
        """The tiles of a frame whose latents are (C, h, w)."""
        c, h, w = latent_shape
        if c != self.channels:
            raise SyndromeError(f"{c} latent channels, the tiles hold {self.channels}")
        return TileGrid(c, h, w, self.tile_blocks)

    # -- the edge's bytes ---------------------------------------------------------------
    def encode_tile(self, symbols: np.ndarray, padding: np.ndarray | None = None) -> TileBits:
        """A full (padded) tile's planes, syndromes, checks and *known* positions: its escapes and
        ``padding`` (zero symbols past the frame's edge, which the decoder knows as it knows escapes)."""
        bits = encode_tile(self.spec, symbols, self.mapping)
        if padding is None or not len(padding):
            return bits
        positions = np.concatenate([bits.escape_positions, padding])
        values = np.concatenate([bits.escape_values, np.zeros(len(padding), np.int64)])
        return replace(bits, escape_positions=positions, escape_values=values)

    def frame_payload(self, latents: np.ndarray) -> bytes:
        """A frame's payload: per tile in raster order its escape count (u16), its escapes (position u16,
        value i16) and its B plane checks (plane 0 first), all big-endian (docs/bitstream.md §8)."""
        grid = self.grid(latents.shape)
        width = self.spec.check_bits // 8
        out = bytearray()
        for i in range(grid.count):
            q = grid.tile(latents, i).reshape(-1)
            escaped = np.flatnonzero(self.mapping.escaped(q))
            values = q[escaped]
            lo, hi = ESCAPE_VALUE_RANGE
            if ((values < lo) | (values > hi)).any():
                raise ValueError(f"tile {i}: a symbol outside {lo} … {hi} cannot be sent as an escape")
            out += struct.pack(">H", len(escaped))
            for p, v in zip(escaped.tolist(), values.tolist()):
                out += struct.pack(">Hh", p, v)
            planes = ((self.mapping.index(q)[None, :] >> np.arange(self.planes)[:, None]) & 1).astype(np.uint8)
            for k in range(self.planes):
                out += plane_check(planes[k], self.spec.check_bits).to_bytes(width, "big")
        return bytes(out)

    def parse_payload(self, payload: bytes, latent_shape: tuple[int, ...]) -> list[TileHeader]:
        """:meth:`frame_payload`'s bytes → each tile's header, its padding among the known positions.

        Raises:
            SyndromeError: truncated or trailing bytes, an escape outside its tile, repeated, or of a
                value the index range holds (the edge would not have escaped it).
        """
        grid = self.grid(latent_shape)
        width = self.spec.check_bits // 8
        n = self.spec.n
        view = memoryview(payload)
        at = 0
        headers = []
        for i in range(grid.count):
            if at + 2 > len(view):
                raise SyndromeError(f"payload ends in tile {i}'s escape count")
            (count,) = struct.unpack_from(">H", view, at)
            at += 2
            if at + 4 * count + width * self.planes > len(view):
                raise SyndromeError(f"payload ends in tile {i} ({count} escapes)")
            esc = np.frombuffer(view[at : at + 4 * count], dtype=np.dtype([("p", ">u2"), ("v", ">i2")]))
            at += 4 * count
            positions, values = esc["p"].astype(np.int64), esc["v"].astype(np.int64)
            if (positions >= n).any() or len(np.unique(positions)) != count or (~self.mapping.escaped(values)).any():
                raise SyndromeError(f"tile {i}: an escape outside the tile, repeated, or inside the index range")
            checks = {k: int.from_bytes(view[at + k * width : at + (k + 1) * width], "big") for k in range(self.planes)}
            at += width * self.planes
            pad = grid.padding(i)
            if np.isin(positions, pad).any():
                raise SyndromeError(f"tile {i}: an escape in the padding past the frame's edge")
            headers.append(
                TileHeader(
                    checks,
                    np.concatenate([positions, pad]),
                    np.concatenate([values, np.zeros(len(pad), np.int64)]),
                    8 * (2 + 4 * count),
                )
            )
        if at != len(view):
            raise SyndromeError(f"{len(view) - at} bytes after the last tile")
        return headers


@dataclass(frozen=True)
class TileGrid:
    """The tiles of a frame's latent grid (C, h, w): ``t`` × ``t`` blocks each, in raster order. Tiles
    at the bottom and right edges are padded to full size with zero symbols, at positions the decoder
    knows (:meth:`padding`), so every tile has the same n = C · t² and uses the same code."""

    channels: int
    height: int
    width: int
    t: int

    @property
    def rows(self) -> int:
        return -(-self.height // self.t)

    @property
    def cols(self) -> int:
        return -(-self.width // self.t)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def extent(self, i: int) -> tuple[slice, slice]:
        """The blocks (rows, columns) of tile ``i`` inside the frame."""
        r, c = divmod(i, self.cols)
        return slice(r * self.t, min((r + 1) * self.t, self.height)), slice(
            c * self.t, min((c + 1) * self.t, self.width)
        )

    def tile(self, latents: np.ndarray, i: int) -> np.ndarray:
        """Tile ``i``'s symbols (C, t²), channel-major, zero past the frame's edge."""
        out = np.zeros((self.channels, self.t, self.t), np.int64)
        rows, cols = self.extent(i)
        out[:, : rows.stop - rows.start, : cols.stop - cols.start] = latents[:, rows, cols]
        return out.reshape(self.channels, -1)

    @cached_property
    def _inside(self) -> dict[tuple[int, int], np.ndarray]:
        return {}

    def padding(self, i: int) -> np.ndarray:
        """Flat positions (channel-major) of tile ``i`` past the frame's edge."""
        rows, cols = self.extent(i)
        key = (rows.stop - rows.start, cols.stop - cols.start)
        if key not in self._inside:
            inside = np.zeros((self.t, self.t), bool)
            inside[: key[0], : key[1]] = True
            self._inside[key] = np.flatnonzero(np.broadcast_to(~inside, (self.channels, self.t, self.t)))
        return self._inside[key]

    def assemble(self, tiles: list[np.ndarray]) -> np.ndarray:
        """Tiles' symbols (each C · t², channel-major) → the frame's (C, h, w)."""
        out = np.zeros((self.channels, self.height, self.width), np.int64)
        for i, q in enumerate(tiles):
            rows, cols = self.extent(i)
            full = np.asarray(q, np.int64).reshape(self.channels, self.t, self.t)
            out[:, rows, cols] = full[:, : rows.stop - rows.start, : cols.stop - cols.start]
        return out


#: what a request for a stereo-tiled source asks for (docs/bitstream.md §8)
SYNDROME_BITS, PLANE_BITS, PRIOR_WORDS = 0, 1, 2
ASK_KINDS = 3


def flat_plane(tile: int, plane: int, kind: int, tiles: int, planes: int) -> int:
    """A request's ``plane`` field for a stereo-tiled source: (kind · tiles + tile) · B + plane, kind
    :data:`SYNDROME_BITS` (accumulated-syndrome bits), :data:`PLANE_BITS` (the plane's own bits) or
    :data:`PRIOR_WORDS` (the plane coded with the prior tables) (docs/bitstream.md §8)."""
    return (kind * tiles + tile) * planes + plane


def split_plane(field: int, tiles: int, planes: int) -> tuple[int, int, int]:
    """Inverse of :func:`flat_plane`: (tile, plane, kind). Raises SyndromeError past the last one."""
    if field >= ASK_KINDS * tiles * planes:
        raise SyndromeError(f"plane {field} past the frame's {tiles} tiles × {planes} planes × {ASK_KINDS} kinds")
    kind, rest = divmod(field, tiles * planes)
    tile, plane = divmod(rest, planes)
    return tile, plane, kind


def words_to_bytes(words: np.ndarray) -> bytes:
    """A prior-coded plane's 32-bit words as bytes (big-endian, docs/bitstream.md §8)."""
    return np.asarray(words, dtype=">u4").tobytes()


def bytes_to_words(data: bytes) -> np.ndarray:
    """Inverse of :func:`words_to_bytes`. Raises SyndromeError for a length that is not 4·k; k may be 0
    (a prior-coded plane whose every bit is 0 has no words: a 0 is coded at c = 0)."""
    if len(data) % 4:
        raise SyndromeError(f"{len(data)} bytes are not a whole number of 32-bit words")
    return np.frombuffer(data, dtype=">u4").astype(np.uint32)


def stereo_tiles_record(
    channels: int,
    index_bits: int,
    scales: dict[str, Any],
    tile_blocks: int = 8,
    check_bits: int = CHECK_BITS,
    disparity_step: float = 0.5,
    max_disparity: float = 0.25,
    max_requests: int = 1 << 20,
    seed: int = 0,
    adapt_prior_blocks: float = 64.0,
    index_bits_by_point: dict[str, int] | None = None,
) -> SyndromeSpec:
    """A binning record for a stereo-tiled source (export: the code's rows are stored in the bundle);
    ``index_bits_by_point``: points that use another number of planes than ``index_bits``."""
    spec = tile_spec(channels * tile_blocks * tile_blocks, index_bits, seed, check_bits)
    conditional = {
        "kind": STEREO_TILES,
        "tile_blocks": tile_blocks,
        "mapping": "zigzag",
        "disparity_step": disparity_step,
        "max_disparity": max_disparity,
        "scales": {str(q): [float(v) for v in s] for q, s in scales.items()},
        "adapt_prior_blocks": adapt_prior_blocks,
        "prior_coding": PRIOR_CODING,
        **({"index_bits": {str(q): int(b) for q, b in index_bits_by_point.items()}} if index_bits_by_point else {}),
    }
    return replace(spec, conditional=conditional, max_requests=max_requests)
