"""The decoder's side of stereo tiles: syndrome decoding of a right view's symbols against a disparity-mixture model of the decoded left.

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

from ndsc.binning import SyndromeError, SyndromeSpec, plane_check
from ndsc.stereo_tiles import STEP_BITS, IndexMap, PriorPlanes, TileBits, TileHeader, decode_plane_bits

#: the first request asks for this fraction of the plane's entropy under the decoder's LLRs
FIRST_REQUEST = 0.5
#: a plane whose entropy under the decoder's LLRs is above this fraction of n is asked for raw (n bits):
#: near rate 1 the accumulate code gains nothing and BP often fails; a plane still undecoded once this
#: fraction of its accumulated bits is held is asked for raw too (the bits already sent are counted)
RAW_FRACTION = 0.9
#: a uniform component over the index alphabet in every symbol's model, so an occluded or badly
#: predicted block never gets an LLR that BP cannot overturn
UNIFORM_MIX = 1e-4
#: a symbol's bits under :func:`laplace_bit_map` at most (its probability floored at 1e-12)
MAX_SYMBOL_BITS = -np.log2(1e-12)
#: per-channel scale sent as 8 bits: log2(scale) on a uniform grid of 256 steps over [−6, 10)
SCALE_BITS, SCALE_LOG2_RANGE = 8, (-6.0, 10.0)


def laplace_bit_map(symbols: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per-symbol bits of integer ``symbols`` under a discretised Laplacian of ``scale`` (M, 1) centred
    on ``centre`` (same shape as symbols)."""
    a = np.abs(symbols - centre)
    tail = np.log2(0.5) - (a - 0.5) / scale / np.log(2) + np.log2(-np.expm1(-1.0 / scale))
    near = 1 - 0.5 * (np.exp(-(0.5 - a) / scale) + np.exp(-(0.5 + a) / scale))
    bits = -np.where(a >= 0.5, tail, np.log2(np.maximum(near, 1e-300)))
    return np.minimum(bits, MAX_SYMBOL_BITS)


def block_bits(symbols: np.ndarray, centres, scale: np.ndarray) -> np.ndarray:
    """Bits of each block's symbols (C, N) per candidate side: (D, N) for ``centres`` (D, C, N) or any
    iterable of (C, N) centres, under :func:`laplace_bit_map` with per-channel ``scale`` (C,) or (C, 1)."""
    scale = np.asarray(scale).reshape(-1, 1)
    return np.stack([laplace_bit_map(symbols, c, scale).sum(axis=0) for c in centres])


class AdaptiveScales:
    """The decoder's per-channel Laplacian scales, refitted after each tile from what it decoded.

    They start at the bundle's calibrated scales, weighted as ``prior_blocks`` blocks; after a tile,
    each block's residual |symbol − side| is taken at its most likely disparity given its decoded
    symbols, and the scales become the weighted mean residual (quantised as if sent: 8 bits each,
    :func:`quantise_scale`). Nothing is sent: the edge never needs them."""

    def __init__(self, calibrated: np.ndarray, prior_blocks: float):
        self.calibrated = np.asarray(calibrated, np.float64)
        self.prior_blocks = prior_blocks
        self.residual_sum = np.zeros_like(self.calibrated)
        self.blocks = 0
        self.current = quantise_scale(self.calibrated)

    def update(self, symbols: np.ndarray, centres: np.ndarray, known: np.ndarray | None = None) -> None:
        """A decoded tile: ``symbols`` (C, N), its ``centres`` (D, C, N); ``known``: blocks to leave out
        (padding past the frame's edge), a (N,) mask."""
        symbols = np.asarray(symbols, np.float64)
        if known is not None and known.any():
            symbols, centres = symbols[:, ~known], centres[:, :, ~known]
        if symbols.shape[1] == 0:
            return
        best = block_bits(symbols, centres, self.current).argmin(axis=0)
        side = centres[best, :, np.arange(symbols.shape[1])].T  # (C, N)
        self.residual_sum += np.abs(symbols - side).sum(axis=1)
        self.blocks += symbols.shape[1]
        w = self.prior_blocks
        self.current = quantise_scale(np.maximum((w * self.calibrated + self.residual_sum) / (w + self.blocks), 1e-3))


def quantise_scale(scale: np.ndarray) -> np.ndarray:
    """Per-channel scales as the decoder receives them (8 bits each, log domain)."""
    lo, hi = SCALE_LOG2_RANGE
    step = (hi - lo) / (1 << SCALE_BITS)
    code = np.clip(np.round((np.log2(np.maximum(scale, 1e-9)) - lo) / step), 0, (1 << SCALE_BITS) - 1)
    return np.exp2(lo + code * step)


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


@dataclass(frozen=True)
class Ask:
    """What a tile's decoding needs next (:func:`decode_tile_steps` yields these).

    * ``syndrome``: the first ``count`` accumulated bits of plane ``plane`` (a prefix: a decoder that
      holds them answers at once; a live one asks its edge only for the bits past what it holds);
    * ``raw``: the plane's n bits;
    * ``prior``: the plane coded with the prior tables (:meth:`TileBits.prior_coded`, docs/bitstream.md §8),
      answered by ``read(words)``: the plane's n bits as a :class:`PriorAnswer`, SyndromeError for words
      that do not decode or whose plane contradicts its check. ``read`` runs where the words arrive
      (the binning stage refuses a bad answer there, precisely), not in the decoding thread.
    """

    kind: str
    plane: int
    count: int = 0
    read: Callable[[np.ndarray], "PriorAnswer"] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PriorAnswer:
    """A prior-coded plane, decoded and checked (:attr:`Ask.read`): its n ``bits`` and how many 32-bit
    ``words`` it came in (what it cost)."""

    bits: np.ndarray
    words: int


def answer_offline(edge: TileBits, ask: Ask, prior: "PriorPlanes | None" = None) -> "np.ndarray | PriorAnswer":
    """``ask`` answered from the edge's own :class:`TileBits` (the offline benchmark's link)."""
    if ask.kind == "syndrome":
        return edge.request(ask.plane, ask.count)
    if ask.kind == "raw":
        return edge.planes[ask.plane].copy()
    assert prior is not None and ask.read is not None
    return ask.read(edge.prior_coded(ask.plane, prior))


def _syndrome_plane(spec: SyndromeSpec, checks: dict[int, int], k: int, llr: np.ndarray, entropy: float, bp: Callable,
                    codes: dict[int, tuple], out: TileResult,
                    sizer: RequestSizer | None = None, surprise: float = 1.0,
                    step_fraction: float = 0.0, search: str = "gallop"):
    """Plane ``k`` from syndrome requests (or raw where BP fails), a generator of :class:`Ask` that returns
    its bits and the syndrome bits it took (0 if it went raw); every bit received is counted in ``out``.
    With ``sizer`` the first request is its guess from ``surprise`` × ``entropy`` (ρΣh), and it learns the
    least the plane needed. ``search``: ``ascend`` asks for the request grid's points in turn (a live
    link: every bit asked for is sent); ``gallop`` searches the grid by galloping then bisection (the
    offline estimate of the same: fewer BP runs, the same bits where BP's success is monotone)."""
    n = spec.n
    limit = int(RAW_FRACTION * n)
    start = min(sizer.first(k, surprise * entropy), limit) if sizer is not None else max(1, int(FIRST_REQUEST * entropy))

    def attempt(count: int):
        """BP on the first ``count`` accumulated bits: the plane if it converges and its CRC matches."""
        if count not in codes:
            codes[count] = spec.merged_code(count)
        positions, chk, var = codes[count]
        sent = yield Ask("syndrome", k, count)
        word, ok, _ = bp(chk, var, n, len(positions), llr, spec.merged_syndrome(sent, count), spec.bp_iterations)
        out.bp_attempts += 1
        return word if ok and plane_check(word, spec.check_bits) == checks[k] else None

    found = None
    grid = request_grid(start, limit, step_fraction)
    if entropy < RAW_FRACTION * n and grid:
        if search == "ascend":
            for i, count in enumerate(grid):
                word = yield from attempt(count)
                if word is not None:
                    found = (i, word)
                    break
        else:
            # Offline, the grid is searched by galloping then bisection (fewer BP runs). BP success is
            # nearly monotone in the bits held; where it is not, bisection lands at or above the first
            # success of the ascending search, so the count is never below what ascending would spend.
            failed, step = -1, 1  # indices into the grid
            i = 0
            while i < len(grid):
                word = yield from attempt(grid[i])
                if word is not None:
                    found = (i, word)
                    break
                failed, i = i, i + step
                step *= 2
            last = len(grid) - 1
            if found is None and failed < last:  # the last grid point below the limit
                word = yield from attempt(grid[last])
                found = (last, word) if word is not None else None
                failed = last if word is None else failed
            while found is not None and found[0] - failed > 1:
                m = (found[0] + failed) // 2
                word = yield from attempt(grid[m])
                if word is not None:
                    found = (m, word)
                else:
                    failed = m
    count = 0
    if found is None:  # too uncertain, or BP failed up to the limit: the plane goes raw
        bits = np.asarray((yield Ask("raw", k)), np.uint8)
        out.raw_bits += n
        out.plane_bits.append(n)
        # the accumulated bits requested before giving up (ascending: every grid point to the limit)
        out.wasted_bits += (grid[-1] if grid else 0) if entropy < RAW_FRACTION * n else 0
    else:
        count = grid[found[0]]
        bits = found[1]
        out.requests += found[0] + 1  # the ascending requests up to the first success
        out.syndrome_bits += count
        out.check_bits += spec.check_bits
        out.plane_bits.append(count + spec.check_bits)
        if sizer is not None:
            below = grid[found[0] - 1] if found[0] else 0  # the request before failed
            needed = yield from _least_passing_steps(attempt, count, below)
            sizer.update(k, needed, surprise * entropy)
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


def _least_passing_steps(attempt: Callable, held: int, failed: int = 0):
    """The fewest of the ``held`` accumulated bits, on a grid of :data:`STEP_BITS` below it and above
    ``failed`` (known to fail), on which BP still passes (bisection, BP's success taken as monotone in
    the bits): what the plane needed, learned from prefixes of the bits the decoder holds. ``attempt``
    returns a generator (of :class:`Ask`) whose value is the word or None."""
    passing, failing = 0, (held - failed - 1) // STEP_BITS + 1  # grid indices: count = held − i · STEP_BITS
    while failing - passing > 1:
        mid = (passing + failing) // 2
        if (yield from attempt(held - mid * STEP_BITS)) is not None:
            passing = mid
        else:
            failing = mid
    return held - passing * STEP_BITS


def _least_passing(attempt: Callable[[int], np.ndarray | None], held: int, failed: int = 0) -> int:
    """:func:`_least_passing_steps` with a plain ``attempt`` (count → word or None)."""
    def steps(count: int):
        return attempt(count)
        yield  # a generator that asks nothing

    gen = _least_passing_steps(steps, held, failed)
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("a plain attempt asks nothing")


def decode_tile(spec: SyndromeSpec, edge: TileBits, centres: np.ndarray, scale: np.ndarray, mapping: IndexMap,
                bp: Callable | None = None, calibration: LlrCalibration | None = None,
                modes: PlaneModes | None = None, sizer: RequestSizer | None = None,
                step_fraction: float = 0.0, device: str | None = None, search: str = "gallop") -> TileResult:
    """Decode one tile from ``edge``'s bits: :func:`decode_tile_steps` with every :class:`Ask` answered
    from ``edge`` (:func:`answer_offline`)."""
    steps = decode_tile_steps(spec, TileHeader.of(edge), centres, scale, mapping, bp, calibration, modes, sizer,
                              step_fraction, device, search)
    answer = None
    while True:
        try:
            ask = steps.send(answer)
        except StopIteration as stop:
            return stop.value
        answer = answer_offline(edge, ask, modes.prior if modes is not None else None)


def decode_tile_steps(spec: SyndromeSpec, header: TileHeader, centres: np.ndarray, scale: np.ndarray,
                      mapping: IndexMap, bp: Callable | None = None, calibration: LlrCalibration | None = None,
                      modes: PlaneModes | None = None, sizer: RequestSizer | None = None,
                      step_fraction: float = 0.0, device: str | None = None, search: str = "gallop"):
    """Decode one tile, a generator: it yields an :class:`Ask` whenever it needs bits from the edge, is
    sent the answer, and returns the :class:`TileResult`. Before any request it has the tile's
    ``header`` (CRCs and escapes) and the decoder's side: ``centres`` (D, C, N) and per-channel
    ``scale`` (C,). With ``calibration`` the model's LLRs go through it before BP, and each decoded plane
    updates it. With ``modes`` the decoder asks for each plane as syndromes or coded with the prior
    tables, whichever it expects to cost fewer bits. With ``sizer`` each plane's first request is sized
    from the planes decoded before (:class:`RequestSizer`); ``step_fraction``: see :func:`request_grid`;
    ``search``: see :func:`_syndrome_plane`. With ``device`` (e.g. ``"cuda"``) the likelihoods are
    computed in torch float32 there (:mod:`fusion_decoder.stereo_llr_torch`)."""
    from fusion_decoder.belief import default_bp

    bp = bp or default_bp()
    _, c, nb = centres.shape
    n = spec.n
    assert c * nb == n
    lo, hi = np.zeros((c, nb), np.int64), np.full((c, nb), mapping.top, np.int64)
    # escapes are known exactly: their (clipped) index is their interval
    known = mapping.index(header.escape_values)
    lo.reshape(-1)[header.escape_positions] = known
    hi.reshape(-1)[header.escape_positions] = known
    out = TileResult(np.zeros(n, np.int64), escape_bits=header.escape_bits)
    codes: dict[int, tuple] = {}
    surprise = TileSurprise()
    on_device = None
    if device is not None:
        import torch

        from fusion_decoder.stereo_llr_torch import bit_llr as likelihoods_on_device

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
        entropy = float(_binary_entropy(1.0 / (1.0 + np.exp(-llr))).sum())
        guess = None
        if modes is not None:
            weights0 = modes.prior.weights0(lo, hi, k)[~fixed]
            p0 = PriorPlanes.probabilities(weights0)
            guess = modes.estimates(k, llr[~fixed], p0, surprise)
        if modes is not None and guess is not None and modes.prefers_prior(guess):
            answer = yield Ask("prior", k, read=_prior_plane_reader(spec, header, k, lo, fixed, weights0))
            bits = answer.bits
            out.prior_bits += 32 * answer.words
            out.plane_bits.append(32 * answer.words)
            out.plane_modes.append("prior")
            modes.update(k, "prior", 32 * answer.words - 16.0, guess["prior_raw"])
        else:
            bits, count = yield from _syndrome_plane(spec, header.checks, k, llr, entropy, bp, codes, out, sizer,
                                                     surprise.ratio("syndrome"), step_fraction, search)
            out.plane_modes.append("syndrome")
            if modes is not None and guess is not None and count:
                modes.update(k, "syndrome", count, guess["syndrome_raw"])
        # the decoded (true) bits' cost under the LLRs BP got: a statistic, nothing decodes from it
        p_true = 1.0 / (1.0 + np.exp(-np.where(bits == 0, llr, -llr)))
        out.plane_llr_bits.append(float(-np.log2(np.maximum(p_true, 1e-300)).sum()))
        out.llr_bits += out.plane_llr_bits[-1]
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
    q[header.escape_positions] = header.escape_values
    out.symbols = q
    return out


def _prior_plane_reader(spec: SyndromeSpec, header: TileHeader, k: int, lo: np.ndarray, fixed: np.ndarray,
                        weights0: np.ndarray) -> Callable[[np.ndarray], PriorAnswer]:
    """Plane ``k``'s words → its bits: the escapes' bits are known, the rest decode with ``weights0``;
    a plane that contradicts its check is refused (forged or corrupt words: never output)."""
    known = ((lo.reshape(-1) >> k) & 1).astype(np.uint8)  # right for the escapes

    def read(words: np.ndarray) -> PriorAnswer:
        bits = known.copy()
        bits[~fixed] = decode_plane_bits(words, weights0)
        if plane_check(bits, spec.check_bits) != header.checks[k]:
            raise SyndromeError(f"plane {k} coded with the prior contradicts its check")
        return PriorAnswer(bits, len(words))

    return read


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

