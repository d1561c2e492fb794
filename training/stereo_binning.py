"""Syndrome coding of a right view's symbols against a disparity-mixture model of the decoded left.

The edge (:func:`encode_tile`) sees only the right view: a tile's integer symbols (C, blocks) become
indices 0 … 2^B − 1 (:class:`IndexMap`: zigzag by default), split into bit planes; per plane it
can send any prefix of the plane's accumulated syndrome (LDPC-accumulate, :mod:`ndsc.binning`, in its
transmission order) and the plane's CRC-16. Symbols outside the index range are *escapes*: sent raw
(position and value) up front, so the decoder knows them before it decodes a plane.

The decoder (:func:`decode_tile`) holds the decoded left view, transformed for each candidate
disparity d (``centres``: (D, C, blocks), the right encoder's analysis of the left warped by d,
scaled by the point's gains) and one Laplacian scale per channel. Each block has a hidden disparity,
uniform over the candidates before decoding (Varodayan et al. 2007). Planes are decoded **most
significant first**, so what is known of a symbol is always an index interval [lo, hi]: given d its
probability is a Laplacian CDF difference, with no alphabet dimension to sum over. Per plane:

1. π_b(d) ∝ Π_c P_d(interval of symbol (c, b)) — the exact posterior of block b's disparity given
   every bit decoded so far (Bayes);
2. per symbol, P(bit = 0) = Σ_d π_b(d) P_d(lower half) / P_d(interval) → LLRs for BP;
3. rate-compatible requests: the decoder first asks for about half the plane's entropy under its own
   LLRs, then :data:`STEP_BITS` more at a time, until BP converges *and* the CRC matches (a plane
   whose entropy is near n, or that still fails at :data:`RAW_FRACTION` · n bits, is sent raw);
   :class:`RequestSizer` and :func:`request_grid` trade a little of those bits for fewer requests;
4. the decoded plane halves every interval, and the next plane's π is sharper.

With :class:`PlaneModes` the decoder may instead ask for a plane coded with the prior tables
(:class:`PriorPlanes`: the chain rule splits a symbol's table bits over its planes, so a tile whose
side information fails costs about what ANS would, not more); it decides per plane from both modes'
expected bits, before any bit of the plane is sent.

Every bit the decoder receives is counted in :class:`TileResult`. The parity checks are
:func:`spread_checks`, not :func:`ndsc.binning.random_checks` (see there why). Not done: Varodayan's
inner EM (re-estimating π from BP's soft bits while a plane decodes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ndsc.binning import SYNDROME, PlanePlan, SyndromeSpec, check_to_bits, plane_check

#: bits of each plane's CRC by default (CRC-16/XMODEM, :func:`ndsc.binning.plane_check`)
CHECK_BITS = 16
#: accumulated-syndrome bits per request after the first: a plane pays half a step on average, so 8
#: rather than 32 saved 2.9 points of the ANS bits on a row of Art (17.9 → 20.8 %), for 4× the requests
STEP_BITS = 8
#: the first request asks for this fraction of the plane's entropy under the decoder's LLRs
FIRST_REQUEST = 0.5
#: a plane whose entropy under the decoder's LLRs is above this fraction of n is asked for raw (n bits):
#: near rate 1 the accumulate code gains nothing and BP often fails; a plane still undecoded once this
#: fraction of its accumulated bits is held is asked for raw too (the bits already sent are counted)
RAW_FRACTION = 0.9
#: BP iterations per attempt
BP_ITERATIONS = 100
#: a uniform component over the index alphabet in every symbol's model, so an occluded or badly
#: predicted block never gets an LLR that BP cannot overturn
UNIFORM_MIX = 1e-4
#: bits of a tile's escape count, and of each escape's value (its position costs ⌈log2 n⌉ bits)
ESCAPE_COUNT_BITS, ESCAPE_VALUE_BITS = 16, 16
#: per-channel scale sent as 8 bits: log2(scale) on a uniform grid of 256 steps over [−6, 10)
SCALE_BITS, SCALE_LOG2_RANGE = 8, (-6.0, 10.0)


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
        side_sources=(0,), offset=-(1 << (index_bits - 1)), index_bits=index_bits,
        planes=tuple(PlanePlan(k, SYNDROME, 1) for k in range(index_bits)),
        checks=spread_checks(n, seed), step_bits=STEP_BITS, max_requests=1 << 30,
        bp_iterations=BP_ITERATIONS, conditional={"kind": "table", "side_offset": 0, "probs": [[1.0] * (1 << index_bits)]},
        check_bits=check_bits)


def quantise_scale(scale: np.ndarray) -> np.ndarray:
    """Per-channel scales as the decoder receives them (8 bits each, log domain)."""
    lo, hi = SCALE_LOG2_RANGE
    step = (hi - lo) / (1 << SCALE_BITS)
    code = np.clip(np.round((np.log2(np.maximum(scale, 1e-9)) - lo) / step), 0, (1 << SCALE_BITS) - 1)
    return np.exp2(lo + code * step)


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
        """``plane``'s bits (escapes left out: the decoder knows them) range-coded with the prior tables'
        P(bit | the planes above), which the edge computes from its own symbols: the 32-bit words sent."""
        index = (self.planes.astype(np.int64) << np.arange(len(self.planes))[:, None]).sum(axis=0)
        lo = (index >> (plane + 1)) << (plane + 1)
        free = np.ones(self.spec.n, bool)
        free[self.escape_positions] = False
        p0 = prior.p0(lo, lo + (1 << (plane + 1)) - 1, plane)[free]
        return range_code_bits(self.planes[plane][free], p0)

    @property
    def escape_bits(self) -> int:
        return ESCAPE_COUNT_BITS + len(self.escape_positions) * (int(np.ceil(np.log2(self.spec.n))) + ESCAPE_VALUE_BITS)


def encode_tile(spec: SyndromeSpec, symbols: np.ndarray, mapping: "IndexMap") -> TileBits:
    """The edge's side of one tile (``symbols``: (C, blocks) integers, flattened channel-major)."""
    q = np.asarray(symbols, np.int64).reshape(-1)
    j = mapping.index(q)
    planes = ((j[None, :] >> np.arange(mapping.bits)[:, None]) & 1).astype(np.uint8)
    escaped = np.flatnonzero(mapping.escaped(q))
    return TileBits(spec, planes, np.stack([spec.accumulated(p) for p in planes]),
                    {k: plane_check(planes[k], spec.check_bits) for k in range(mapping.bits)}, escaped, q[escaped])


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


@dataclass
class TileResult:
    """One tile's decoding: the symbols and every bit the decoder received."""

    symbols: np.ndarray
    syndrome_bits: int = 0  # accumulated-syndrome bits requested, all planes
    check_bits: int = 0
    escape_bits: int = 0
    raw_bits: int = 0  # planes sent raw (too uncertain, or BP failed up to RAW_FRACTION · n)
    prior_bits: int = 0  # planes the decoder asked for coded with the prior tables (:class:`PlaneModes`)
    wasted_bits: int = 0  # accumulated bits sent for a plane that then went raw
    requests: int = 0
    bp_attempts: int = 0
    llr_bits: float = 0.0  # Σ −log2 P(true bit) under the LLRs BP got: the SW rate of a per-bit model
    plane_bits: list[int] = field(default_factory=list)  # bits received per plane, most significant first
    plane_llr_bits: list[float] = field(default_factory=list)  # their −log2 P(true bits) under the LLRs
    plane_modes: list[str] = field(default_factory=list)  # "syndrome" or "prior" per plane, most significant first

    @property
    def bits(self) -> int:
        return self.syndrome_bits + self.check_bits + self.escape_bits + self.raw_bits + self.wasted_bits + self.prior_bits


def _bit_llr(lo: np.ndarray, hi: np.ndarray, k: int, mapping: IndexMap, centres: np.ndarray, scale: np.ndarray,
             chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """LLR of bit ``k`` of every symbol (C, N) given its index interval [lo, hi] (of size 2^(k+1), or
    one index for an escape) and the mixture over candidates; and per block the posterior of d (D, N)."""
    mid = lo + (1 << k)  # first index of the upper half
    n0, n1 = np.minimum(mid, hi + 1) - lo, np.maximum(hi - mid + 1, 0)
    size = 1.0 / (mapping.top + 1)
    s = scale.reshape(-1, 1)
    d_count = centres.shape[0]
    # pass 1: log P_d(every interval of the block) per candidate (D, N): the exact posterior of d
    loglik = np.empty((d_count, lo.shape[1]))
    halves = []
    for start in range(0, d_count, chunk):
        mu = centres[start:start + chunk]
        p0 = (1 - UNIFORM_MIX) * mapping.prob(lo, np.minimum(mid - 1, hi), mu, s) + UNIFORM_MIX * size * n0
        p1 = (1 - UNIFORM_MIX) * mapping.prob(mid, hi, mu, s) + UNIFORM_MIX * size * n1
        loglik[start:start + chunk] = np.log(p0 + p1).sum(axis=1)
        halves.append(p0 / (p0 + p1))
    post = np.exp(loglik - loglik.max(axis=0, keepdims=True))
    post /= post.sum(axis=0, keepdims=True)
    # pass 2: P(bit = 0) = Σ_d π(d) P_d(lower half) / P_d(interval)
    q0 = np.zeros(lo.shape)
    for i, h in enumerate(halves):
        q0 += (post[i * chunk:(i + 1) * chunk, None, :] * h).sum(axis=0)
    q0 = np.clip(q0, 1e-15, 1 - 1e-15)
    return np.log(q0) - np.log1p(-q0), post


def _monotone_log_odds(bits: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Per bin, log((1 − r) / r) of the error rate r = wrong / bits, with the rates made non-increasing
    over the bins by pooling adjacent violators (isotonic regression weighted by the bits counted)."""
    blocks: list[list[float]] = []  # [bits, wrong, bins pooled]
    for b, w in zip(bits.tolist(), wrong.tolist()):
        blocks.append([b, w, 1])
        while len(blocks) > 1 and blocks[-2][1] * blocks[-1][0] < blocks[-1][1] * blocks[-2][0]:
            b2, w2, k2 = blocks.pop()
            blocks[-1][0] += b2
            blocks[-1][1] += w2
            blocks[-1][2] += k2
    rate = np.concatenate([np.full(int(k), w / b) for b, w, k in blocks])
    return np.log((1.0 - rate) / rate)


class LlrCalibration:
    """The decoder's map from its model's LLRs to calibrated ones, learned from the planes it decoded.

    The Laplacian model is miscalibrated on real scenes: too unsure where |LLR| is 1–3 (7 % of those
    bits wrong where it predicts 18 %) and far too sure in the tail (3 in 10 000 wrong at |LLR| 10–15
    where it predicts 1 in 100 000), and BP pays for a sure wrong bit with many syndrome bits. After
    each plane the decoder knows every bit it decoded, so per plane index and per |LLR| bin it counts
    how many of the model's hard decisions were wrong, and maps |LLR| to the empirical log-odds
    (piecewise linear between bin centres; the error rates made non-increasing in |LLR| by pooling
    adjacent bins that violate it, weighted by their counts). Until data arrive the counts hold a prior of
    :data:`PRIOR_BITS` bits per bin at the model's own error rate, so the map starts as the identity.
    Nothing is sent: the edge never needs the map.
    """

    EDGES = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 14, np.inf])
    PRIOR_BITS = 256.0

    def __init__(self, planes: int):
        lo, hi = self.EDGES[:-1], np.minimum(self.EDGES[1:], 16.0)
        self.centre = 0.5 * (lo + hi)
        self.bits = np.full((planes, len(self.centre)), self.PRIOR_BITS)
        self.wrong = self.PRIOR_BITS / (1.0 + np.exp(self.centre)) * np.ones((planes, 1))

    def _bins(self, magnitude: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.EDGES, magnitude, side="right") - 1, 0, len(self.centre) - 1)

    def __call__(self, plane: int, llr: np.ndarray) -> np.ndarray:
        """Calibrated LLRs of one plane (sign kept)."""
        return np.sign(llr) * np.interp(np.abs(llr), self.centre, _monotone_log_odds(self.bits[plane], self.wrong[plane]))

    def update(self, plane: int, llr: np.ndarray, bits: np.ndarray) -> None:
        """Count a decoded plane: the model's (uncalibrated) ``llr`` against the decoded ``bits``."""
        b = self._bins(np.abs(llr))
        self.bits[plane] += np.bincount(b, minlength=len(self.centre))
        self.wrong[plane] += np.bincount(b, weights=((llr < 0) != (bits == 1)).astype(np.float64),
                                         minlength=len(self.centre))


def _bernoulli():
    import constriction

    return constriction.stream.model.Bernoulli(perfect=False)


def range_code_bits(bits: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """``bits`` range-coded (constriction) with P(bit = 0) = ``p0`` each: the compressed 32-bit words."""
    import constriction

    coder = constriction.stream.queue.RangeEncoder()
    coder.encode(np.asarray(bits, np.int32), _bernoulli(), np.asarray(1.0 - p0, np.float64))
    return coder.get_compressed()


def range_decode_bits(words: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """Inverse of :func:`range_code_bits` given the same ``p0``."""
    import constriction

    return constriction.stream.queue.RangeDecoder(words).decode(_bernoulli(), np.asarray(1.0 - p0, np.float64))


class PriorPlanes:
    """P(bit k = 0 | index in [lo, hi]) under the right view's static tables (no side information): the
    chain rule splits a symbol's table bits into its planes' bits, so coding a plane with these
    probabilities costs what ANS would have spent on that plane. Both sides compute them, the edge
    from its own symbols' higher planes and the decoder from the planes it decoded.

    ``tables``: one :class:`ndsc.entropy.ChannelTable` per channel; positions are channel-major with
    ``n // len(tables)`` per channel. An index outside a table's range gets an equal share of the
    escape frequency."""

    FLOOR = 2.0 ** -20

    def __init__(self, tables, mapping: "IndexMap", n: int):
        values = mapping.value(np.arange(mapping.top + 1))
        mass = np.empty((len(tables), mapping.top + 1))
        for c, table in enumerate(tables):
            freqs = np.asarray(table.freqs, np.float64)
            inside = (values >= table.offset) & (values <= table.offset + len(freqs) - 2)
            mass[c] = np.where(inside, freqs[np.clip(values - table.offset, 0, len(freqs) - 1)],
                               freqs[-1] / max(1, int((~inside).sum())))
            mass[c] = np.maximum(mass[c] / mass[c].sum(), self.FLOOR)
        self.cum = np.concatenate([np.zeros((len(tables), 1)), np.cumsum(mass, axis=1)], axis=1)
        self.channel = np.repeat(np.arange(len(tables)), n // len(tables))

    def p0(self, lo: np.ndarray, hi: np.ndarray, k: int) -> np.ndarray:
        """Per position (flat, channel-major) P(bit k = 0) given its index interval [lo, hi]."""
        lo, hi = np.asarray(lo).reshape(-1), np.asarray(hi).reshape(-1)
        mid = np.minimum(lo + (1 << k), hi + 1)
        cum, ch = self.cum, self.channel
        p = (cum[ch, mid] - cum[ch, lo]) / np.maximum(cum[ch, hi + 1] - cum[ch, lo], 1e-300)
        return np.clip(p, self.FLOOR, 1.0 - self.FLOOR)


class PlaneModes:
    """The decoder's choice, per plane, between syndrome bits and the plane coded with the prior tables.

    Binning costs more than the tables where the side information is poor (occlusions, the strip of
    the right view that the left camera does not see), and its fixed costs (the CRC, half a request
    step) dominate planes of a few bits. Before asking for a plane the decoder knows its LLRs (P(bit =
    0) = q) and the prior's probabilities p, so it estimates each mode's bits:

    * syndromes ≈ α_k · ρ_q · Σ h(q) + CRC + half a step;
    * the prior ≈ β_k · ρ_p · Σ cross-entropy(q, p) + half a 32-bit word;

    where ρ is how surprised each estimate was on the tile's planes decoded so far (the true bits' cost
    over the estimate: a tile whose side information misled the planes above will mislead this one),
    and α_k, β_k the ratios of real to estimated bits over the planes decoded in each mode so far.
    It asks for the prior where that is cheaper by :data:`MARGIN`: one feedback bit per plane, nothing
    the edge must know in advance.
    """

    SYNDROME_OVERHEAD = 1.25  # α_k before any plane is decoded (BP's bits over the LLR entropy)
    PRIOR_OVERHEAD = 0.9  # β_k before any plane: the cross-entropy overstates the prior's bits a little
    PRIOR_WEIGHT_BITS = 2000.0  # weight of those starting ratios, in estimated bits
    SURPRISE_WEIGHT_BITS = 64.0  # ρ's pseudo-count: a tile's first planes say little
    #: the prior is asked for only when expected below this fraction of the syndromes: a plane's estimates
    #: are noisy (±30 %), and on scikit-image's pair and a row of Art choosing at 1.0 picked the prior
    #: wrongly as often as rightly
    MARGIN = 0.9

    def __init__(self, prior: PriorPlanes, planes: int, check_bits: int):
        self.prior, self.check_bits = prior, check_bits
        w = self.PRIOR_WEIGHT_BITS
        self.real = {"syndrome": np.full(planes, w * self.SYNDROME_OVERHEAD), "prior": np.full(planes, w * self.PRIOR_OVERHEAD)}
        self.estimated = {"syndrome": np.full(planes, w), "prior": np.full(planes, w)}

    def estimates(self, k: int, llr: np.ndarray, p0: np.ndarray, surprise: "TileSurprise") -> dict[str, float]:
        """Expected bits of plane ``k`` (its free positions' ``llr`` and prior ``p0``) in each mode, and
        the estimates the ratios α, β are learned on (keys ``*_raw``: before α, β and fixed costs)."""
        q0 = 1.0 / (1.0 + np.exp(-llr))
        syndrome_raw = float(_binary_entropy(q0).sum()) * surprise.ratio("syndrome")
        prior_raw = _cross_entropy(q0, p0) * surprise.ratio("prior")
        ratio = {m: self.real[m][k] / self.estimated[m][k] for m in self.real}
        return {"syndrome": ratio["syndrome"] * syndrome_raw + self.check_bits + STEP_BITS / 2,
                "prior": ratio["prior"] * prior_raw + 16.0, "syndrome_raw": syndrome_raw, "prior_raw": prior_raw}

    def prefers_prior(self, guess: dict[str, float]) -> bool:
        """Whether :meth:`estimates`' ``guess`` asks for the plane coded with the prior."""
        return guess["prior"] < self.MARGIN * guess["syndrome"]

    def update(self, k: int, mode: str, real_bits: float, estimated_raw: float) -> None:
        """Count a plane decoded in ``mode``: its real bits (fixed costs left out) against the estimate."""
        self.real[mode][k] += real_bits
        self.estimated[mode][k] += estimated_raw


@dataclass
class TileSurprise:
    """Per tile, the true bits' cost under the LLRs and under the prior, against their estimates, over
    the planes decoded so far (see :class:`PlaneModes`)."""

    true: dict[str, float] = field(default_factory=lambda: {"syndrome": 0.0, "prior": 0.0})
    estimated: dict[str, float] = field(default_factory=lambda: {"syndrome": 0.0, "prior": 0.0})

    def ratio(self, mode: str) -> float:
        w = PlaneModes.SURPRISE_WEIGHT_BITS
        return (self.true[mode] + w) / (self.estimated[mode] + w)

    def add(self, llr: np.ndarray, p0: np.ndarray, bits: np.ndarray) -> None:
        """A decoded plane's free positions: their LLRs, prior P(0) and decoded bits."""
        q0 = 1.0 / (1.0 + np.exp(-llr))
        zero = bits == 0
        self.true["syndrome"] += float(-np.log2(np.maximum(np.where(zero, q0, 1.0 - q0), 1e-300)).sum())
        self.estimated["syndrome"] += float(_binary_entropy(q0).sum())
        self.true["prior"] += float(-np.log2(np.where(zero, p0, 1.0 - p0)).sum())
        self.estimated["prior"] += _cross_entropy(q0, p0)


def _cross_entropy(q0: np.ndarray, p0: np.ndarray) -> float:
    """Σ of the bits coding a bit with P(0) = ``p0`` costs when it is 0 with probability ``q0``."""
    return float(-(q0 * np.log2(p0) + (1.0 - q0) * np.log2(1.0 - p0)).sum())


class RequestSizer:
    """The size of a plane's first request, learned by the decoder from the planes it decoded.

    Fixed at :data:`FIRST_REQUEST` of the plane's LLR entropy Σh, the first request is far below what
    BP needs (1.3–1.5 Σh), and the plane then takes one request per :data:`STEP_BITS`: 17–45 round
    trips. Instead the first request is the :data:`QUANTILE` of (bits needed / ρΣh) over the last
    :data:`KEEP` planes of the same significance, times this plane's ρΣh, where ρ is how surprised the
    LLRs were on the tile's planes above (:class:`TileSurprise`; it halved the spread of that ratio on
    a row of Art): a plane then needs fewer requests, and pays more than it needed (the first request)
    in about that quantile of planes. The decoder learns what each plane needed by BP on prefixes of
    the bits it holds (rate-compatible: every prefix is a code), so what it learns is not cut off at
    its own guess. Measured (docs/stereo.md): 222 → 146 requests a tile for 0.8 points of saving.
    """

    QUANTILE = 0.2
    KEEP = 256
    MIN_SEEN = 8  # before this many planes of a significance: FIRST_REQUEST of Σh

    def __init__(self, planes: int):
        self.ratios: list[list[float]] = [[] for _ in range(planes)]

    def first(self, k: int, entropy: float) -> int:
        """The first request's bits for plane ``k`` whose LLR entropy (times ρ) is ``entropy``."""
        seen = self.ratios[k]
        fraction = FIRST_REQUEST if len(seen) < self.MIN_SEEN else float(np.quantile(seen, self.QUANTILE))
        return max(1, int(fraction * entropy))

    def update(self, k: int, needed: int, entropy: float) -> None:
        """Plane ``k`` needed ``needed`` accumulated bits at LLR entropy (times ρ) ``entropy``."""
        if entropy > 0:
            self.ratios[k] = (self.ratios[k] + [needed / entropy])[-self.KEEP:]


def _syndrome_plane(spec: SyndromeSpec, edge: TileBits, k: int, llr: np.ndarray, entropy: float, bp: Callable,
                    codes: dict[int, tuple], out: TileResult,
                    sizer: RequestSizer | None = None, surprise: float = 1.0,
                    step_fraction: float = 0.0) -> tuple[np.ndarray, int]:
    """Plane ``k`` from syndrome requests (or raw where BP fails): its bits and the syndrome bits it took
    (0 if it went raw); every bit received is counted in ``out``. With ``sizer`` the first request is
    its guess from ``surprise`` × ``entropy`` (ρΣh), and it learns the least the plane needed."""
    n = spec.n
    limit = int(RAW_FRACTION * n)
    start = min(sizer.first(k, surprise * entropy), limit) if sizer is not None else max(1, int(FIRST_REQUEST * entropy))

    def attempt(count: int) -> np.ndarray | None:
        """BP on the first ``count`` accumulated bits: the plane if it converges and its CRC matches."""
        if count not in codes:
            codes[count] = spec.merged_code(count)
        positions, chk, var = codes[count]
        word, ok, _ = bp(chk, var, n, len(positions), llr, spec.merged_syndrome(edge.request(k, count), count),
                         spec.bp_iterations)
        out.bp_attempts += 1
        return word if ok and plane_check(word, spec.check_bits) == edge.checks[k] else None

    # The decoder asks for start, start + STEP_BITS, … until a word passes; offline, the grid is
    # searched by galloping then bisection (fewer BP runs). BP success is nearly monotone in the bits
    # held; where it is not, bisection lands at or above the first success of the ascending search,
    # so the count is never below what the incremental requests would spend.
    found = None
    grid = request_grid(start, limit, step_fraction)
    if entropy < RAW_FRACTION * n and grid:
        failed, step = -1, 1  # indices into the grid
        i = 0
        while i < len(grid):
            word = attempt(grid[i])
            if word is not None:
                found = (i, word)
                break
            failed, i = i, i + step
            step *= 2
        last = len(grid) - 1
        if found is None and failed < last:  # the last grid point below the limit
            word = attempt(grid[last])
            found = (last, word) if word is not None else None
            failed = last if word is None else failed
        while found is not None and found[0] - failed > 1:
            m = (found[0] + failed) // 2
            word = attempt(grid[m])
            if word is not None:
                found = (m, word)
            else:
                failed = m
    count = 0
    if found is None:  # too uncertain, or BP failed up to the limit: the plane goes raw
        bits = edge.planes[k].copy()
        out.raw_bits += n
        out.plane_bits.append(n)
        # the accumulated bits requested before giving up (ascending: every grid point to the limit)
        out.wasted_bits += limit if entropy < RAW_FRACTION * n else 0
    else:
        count = grid[found[0]]
        bits = found[1]
        out.requests += found[0] + 1  # the ascending requests up to the first success
        out.syndrome_bits += count
        out.check_bits += spec.check_bits
        out.plane_bits.append(count + spec.check_bits)
        if sizer is not None:
            below = grid[found[0] - 1] if found[0] else 0  # the request before failed
            sizer.update(k, _least_passing(attempt, count, below), surprise * entropy)
    return bits, count


def request_grid(start: int, limit: int, step_fraction: float = 0.0) -> list[int]:
    """The accumulated bits held after each request of a plane, up to ``limit``: ``start``, then each
    request :data:`STEP_BITS` more, or ``step_fraction`` of what is held when that is more (fewer
    round trips for large planes, for about half a step of extra bits)."""
    grid = []
    count = start
    while count <= limit:
        grid.append(count)
        count += max(STEP_BITS, int(step_fraction * count))
    return grid


def _least_passing(attempt: Callable[[int], np.ndarray | None], held: int, failed: int = 0) -> int:
    """The fewest of the ``held`` accumulated bits, on a grid of :data:`STEP_BITS` below it and above
    ``failed`` (known to fail), on which BP still passes (bisection, BP's success taken as monotone in
    the bits): what the plane needed, learned from prefixes of the bits the decoder holds."""
    passing, failing = 0, (held - failed - 1) // STEP_BITS + 1  # grid indices: count = held − i · STEP_BITS
    while failing - passing > 1:
        mid = (passing + failing) // 2
        if attempt(held - mid * STEP_BITS) is not None:
            passing = mid
        else:
            failing = mid
    return held - passing * STEP_BITS


def decode_tile(spec: SyndromeSpec, edge: TileBits, centres: np.ndarray, scale: np.ndarray, mapping: IndexMap,
                bp: Callable | None = None, calibration: LlrCalibration | None = None,
                modes: PlaneModes | None = None, sizer: RequestSizer | None = None,
                step_fraction: float = 0.0, device: str | None = None) -> TileResult:
    """Decode one tile from ``edge``'s bits (asked only through :meth:`TileBits.request`, plus its CRCs
    and escapes) and the decoder's side: ``centres`` (D, C, N) and per-channel ``scale`` (C,).
    With ``calibration`` the model's LLRs go through it before BP, and each decoded plane updates it.
    With ``modes`` the decoder asks for each plane as syndromes or coded with the prior tables
    (:meth:`TileBits.prior_coded`), whichever it expects to cost fewer bits. With ``sizer`` each plane's
    first request is sized from the planes decoded before (:class:`RequestSizer`); ``step_fraction``:
    see :func:`request_grid`. With ``device`` (e.g. ``"cuda"``) the likelihoods are computed in torch
    float32 there (:mod:`training.stereo_llr_torch`)."""
    from fusion_decoder.belief import default_bp

    bp = bp or default_bp()
    _, c, nb = centres.shape
    n = spec.n
    assert c * nb == n
    lo, hi = np.zeros((c, nb), np.int64), np.full((c, nb), mapping.top, np.int64)
    # escapes are known exactly: their (clipped) index is their interval
    known = mapping.index(edge.escape_values)
    lo.reshape(-1)[edge.escape_positions] = known
    hi.reshape(-1)[edge.escape_positions] = known
    out = TileResult(np.zeros(n, np.int64), escape_bits=edge.escape_bits)
    codes: dict[int, tuple] = {}
    surprise = TileSurprise()
    on_device = None
    if device is not None:
        import torch

        from training.stereo_llr_torch import bit_llr as likelihoods_on_device

        on_device = torch.as_tensor(centres, dtype=torch.float32, device=device)
    for k in range(mapping.bits - 1, -1, -1):  # most significant plane first
        llr, _ = _bit_llr(lo, hi, k, mapping, centres, scale) if on_device is None else \
            likelihoods_on_device(lo, hi, k, mapping, on_device, scale)
        llr = llr.reshape(-1)
        model_llr = llr  # the calibration returns a new array, so the model's LLRs stay for its update
        if calibration is not None:
            llr = calibration(k, llr)
        fixed = (lo == hi).reshape(-1)  # escapes: their bit is known
        llr[fixed] = np.where(((lo.reshape(-1)[fixed] >> k) & 1) == 0, 30.0, -30.0)
        truth = edge.planes[k]  # only for the llr_bits statistic, never for decoding
        p_true = 1.0 / (1.0 + np.exp(-np.where(truth == 0, llr, -llr)))
        out.plane_llr_bits.append(float(-np.log2(np.maximum(p_true, 1e-300)).sum()))
        out.llr_bits += out.plane_llr_bits[-1]
        entropy = float(_binary_entropy(1.0 / (1.0 + np.exp(-llr))).sum())
        guess = None
        if modes is not None:
            p0 = modes.prior.p0(lo, hi, k)[~fixed]
            guess = modes.estimates(k, llr[~fixed], p0, surprise)
        if modes is not None and guess is not None and modes.prefers_prior(guess):
            words = edge.prior_coded(k, modes.prior)
            bits = ((lo.reshape(-1) >> k) & 1).astype(np.uint8)  # right for the escapes
            bits[~fixed] = range_decode_bits(words, p0)
            out.prior_bits += 32 * len(words)
            out.plane_bits.append(32 * len(words))
            out.plane_modes.append("prior")
            modes.update(k, "prior", 32 * len(words) - 16.0, guess["prior_raw"])
        else:
            bits, count = _syndrome_plane(spec, edge, k, llr, entropy, bp, codes, out, sizer,
                                          surprise.ratio("syndrome"), step_fraction)
            out.plane_modes.append("syndrome")
            if modes is not None and guess is not None and count:
                modes.update(k, "syndrome", count, guess["syndrome_raw"])
        if calibration is not None:
            calibration.update(k, model_llr[~fixed], bits[~fixed])
        if modes is not None:
            surprise.add(llr[~fixed], p0, bits[~fixed])
        bit = bits.reshape(c, nb).astype(np.int64)
        # the decoded bit halves every interval (an escape keeps its single index)
        free = lo != hi
        lo = np.where(free & (bit == 1), lo + (1 << k), lo)
        hi = np.where(free & (bit == 0), lo + (1 << k) - 1, hi)
    assert (lo == hi).all()
    q = mapping.value(lo.reshape(-1))
    q[edge.escape_positions] = edge.escape_values
    out.symbols = q
    return out


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def mixture_bits(symbols: np.ndarray, centres: np.ndarray, scale: np.ndarray, mapping: IndexMap) -> float:
    """Ideal bits of a tile's indices under the decoder's own model (per block, −log2 of the mean over
    candidates of Π_c P_d(index)): what an ideal Slepian–Wolf coder with this model would need
    (:func:`decode_tile` approaches it from above: per-bit LLRs and the code lose the rest)."""
    j = mapping.index(symbols)
    s = scale.reshape(-1, 1)
    loglik = np.stack([np.log((1 - UNIFORM_MIX) * mapping.prob(j, j, mu, s) + UNIFORM_MIX / (mapping.top + 1)).sum(0)
                       for mu in centres])  # (D, N)
    best = loglik.max(axis=0)
    log_mean = best + np.log(np.exp(loglik - best).mean(axis=0))
    return float(-log_mean.sum() / np.log(2))


__all__ = ["IndexMap", "LlrCalibration", "RequestSizer", "TileBits", "TileResult", "decode_tile", "encode_tile", "mixture_bits", "quantise_scale", "tile_spec",
           "check_to_bits"]
