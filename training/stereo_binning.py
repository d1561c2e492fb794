"""Syndrome coding of a right view's symbols against a disparity-mixture model of the decoded left.

The edge (:func:`encode_tile`) sees only the right view: a tile's integer symbols (C, blocks) become
indices ``j = clip(q − offset, 0, 2^B − 1)`` (B = ``index_bits``), split into bit planes; per plane it
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
   that still fails with every accumulated bit is sent raw, n bits);
4. the decoded plane halves every interval, and the next plane's π is sharper.

Every bit the decoder receives is counted in :class:`TileResult`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ndsc.binning import SYNDROME, PlanePlan, SyndromeSpec, check_to_bits, plane_check, random_checks

#: bits of each plane's CRC (CRC-16/XMODEM, :func:`ndsc.binning.plane_check`)
CHECK_BITS = 16
#: accumulated-syndrome bits per request after the first
STEP_BITS = 32
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


def tile_spec(n: int, index_bits: int, seed: int = 0) -> SyndromeSpec:
    """A syndrome record for tiles of ``n`` symbols: every plane syndrome coded with a CRC-16, the
    code a random degree-3 n × n matrix (as :mod:`ndsc.binning` exports)."""
    return SyndromeSpec(
        side_sources=(0,), offset=-(1 << (index_bits - 1)), index_bits=index_bits,
        planes=tuple(PlanePlan(k, SYNDROME, 1) for k in range(index_bits)),
        checks=random_checks(n, 3, seed), step_bits=STEP_BITS, max_requests=1 << 30,
        bp_iterations=BP_ITERATIONS, conditional={"kind": "table", "side_offset": 0, "probs": [[1.0] * (1 << index_bits)]},
        check_bits=CHECK_BITS)


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

    @property
    def escape_bits(self) -> int:
        return ESCAPE_COUNT_BITS + len(self.escape_positions) * (int(np.ceil(np.log2(self.spec.n))) + ESCAPE_VALUE_BITS)


def encode_tile(spec: SyndromeSpec, symbols: np.ndarray) -> TileBits:
    """The edge's side of one tile (``symbols``: (C, blocks) integers, flattened channel-major)."""
    q = np.asarray(symbols, np.int64).reshape(-1)
    planes = spec.planes_of(q)
    top = spec.offset + (1 << spec.index_bits) - 1
    escaped = np.flatnonzero((q < spec.offset) | (q > top))
    return TileBits(spec, planes, np.stack([spec.accumulated(p) for p in planes]),
                    {k: plane_check(planes[k], CHECK_BITS) for k in range(spec.index_bits)}, escaped, q[escaped])


def _laplace_interval(a: np.ndarray, b: np.ndarray, mu: np.ndarray, s: np.ndarray) -> np.ndarray:
    """P(a < X < b) for X ~ Laplace(mu, s), stable in the tails (a or b may be ±inf)."""
    za, zb = (a - mu) / s, (b - mu) / s
    above = za >= 0  # the whole interval above the centre
    below = zb <= 0
    with np.errstate(over="ignore", invalid="ignore"):
        p_above = 0.5 * np.exp(-za) * -np.expm1(-(zb - za))
        p_below = 0.5 * np.exp(zb) * -np.expm1(-(zb - za))
        p_mid = 1.0 - 0.5 * np.exp(za) - 0.5 * np.exp(-zb)
    p = np.where(above, p_above, np.where(below, p_below, p_mid))
    return np.nan_to_num(np.maximum(p, 0.0))


@dataclass
class TileResult:
    """One tile's decoding: the symbols and every bit the decoder received."""

    symbols: np.ndarray
    syndrome_bits: int = 0  # accumulated-syndrome bits requested, all planes
    check_bits: int = 0
    escape_bits: int = 0
    raw_bits: int = 0  # planes sent raw (too uncertain, or BP failed up to RAW_FRACTION · n)
    wasted_bits: int = 0  # accumulated bits sent for a plane that then went raw
    requests: int = 0
    bp_attempts: int = 0
    llr_bits: float = 0.0  # Σ −log2 P(true bit) under the LLRs BP got: the SW rate of a per-bit model
    plane_bits: list[int] = field(default_factory=list)

    @property
    def bits(self) -> int:
        return self.syndrome_bits + self.check_bits + self.escape_bits + self.raw_bits + self.wasted_bits


def _bit_llr_and_update(lo: np.ndarray, hi: np.ndarray, k: int, offset: int, centres: np.ndarray,
                        scale: np.ndarray, index_bits: int, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """LLR of bit ``k`` of every symbol (C, N) given its interval [lo, hi] (of size 2^(k+1)) and the
    mixture over candidates, and per block the log posterior of d (D, N) it used."""
    top = (1 << index_bits) - 1
    mid = lo + (1 << k)  # first index of the upper half
    edge = lambda j, lower: np.where(j <= 0, -np.inf, offset + j - 0.5) if lower else \
        np.where(j >= top, np.inf, offset + j + 0.5)
    # an escape's interval is one index (lo = hi < mid): its upper half is empty
    upper = mid <= hi
    a, m_lo, m_hi, b = edge(lo, True), edge(np.minimum(mid - 1, hi), False), edge(mid, True), edge(hi, False)
    n0, n1 = np.minimum(mid, hi + 1) - lo, np.maximum(hi - mid + 1, 0)
    size = 1.0 / (1 << index_bits)
    s = scale.reshape(-1, 1)
    d_count = centres.shape[0]
    # pass 1: log P_d(all intervals of the block) per candidate (D, N)
    loglik = np.empty((d_count, lo.shape[1]))
    halves = []
    for start in range(0, d_count, chunk):
        mu = centres[start:start + chunk]
        p0 = (1 - UNIFORM_MIX) * _laplace_interval(a, m_lo, mu, s) + UNIFORM_MIX * size * n0
        p1 = ((1 - UNIFORM_MIX) * _laplace_interval(m_hi, b, mu, s) + UNIFORM_MIX * size * n1) * upper
        loglik[start:start + chunk] = np.log(p0 + p1).sum(axis=1)
        halves.append((p0, p1))
    post = loglik - loglik.max(axis=0, keepdims=True)
    post = np.exp(post)
    post /= post.sum(axis=0, keepdims=True)
    # pass 2: P(bit = 0) = Σ_d π(d) P_d(lower) / P_d(interval)
    q0 = np.zeros(lo.shape)
    for i, (p0, p1) in enumerate(halves):
        q0 += (post[i * chunk:(i + 1) * chunk, None, :] * (p0 / (p0 + p1))).sum(axis=0)
    q0 = np.clip(q0, 1e-15, 1 - 1e-15)
    return np.log(q0) - np.log1p(-q0), np.log(np.maximum(post, 1e-300))


def decode_tile(spec: SyndromeSpec, edge: TileBits, centres: np.ndarray, scale: np.ndarray,
                bp: Callable | None = None) -> TileResult:
    """Decode one tile from ``edge``'s bits (only asked through :meth:`TileBits.request`, its CRCs
    and escapes) and the decoder's side: ``centres`` (D, C, N) and per-channel ``scale`` (C,)."""
    from fusion_decoder.belief import default_bp

    bp = bp or default_bp()
    d_count, c, nb = centres.shape
    n = spec.n
    assert c * nb == n
    top = (1 << spec.index_bits) - 1
    lo, hi = np.zeros((c, nb), np.int64), np.full((c, nb), top, np.int64)
    # escapes are known exactly: their (clipped) index is the interval
    known = np.clip(edge.escape_values - spec.offset, 0, top)
    lo.reshape(-1)[edge.escape_positions] = known
    hi.reshape(-1)[edge.escape_positions] = known
    out = TileResult(np.zeros(n, np.int64), escape_bits=edge.escape_bits)
    codes: dict[int, tuple] = {}
    for k in range(spec.index_bits - 1, -1, -1):  # most significant plane first
        llr, _ = _bit_llr_and_update(lo, hi, k, spec.offset, centres, scale, spec.index_bits)
        llr = llr.reshape(-1)
        fixed = (lo == hi).reshape(-1)  # escapes: their bit is known
        llr[fixed] = np.where(((lo.reshape(-1)[fixed] >> k) & 1) == 0, 30.0, -30.0)
        truth = edge.planes[k]  # only for the llr_bits statistic, never for decoding
        p_true = 1.0 / (1.0 + np.exp(-np.where(truth == 0, llr, -llr)))
        out.llr_bits += float(-np.log2(np.maximum(p_true, 1e-300)).sum())
        entropy = float(_binary_entropy(1.0 / (1.0 + np.exp(-llr))).sum())
        count = max(1, int(FIRST_REQUEST * entropy))
        bits = None
        if entropy >= RAW_FRACTION * n:
            count = n + 1  # straight to raw
        while True:
            if count > RAW_FRACTION * n:  # give up on syndromes: the plane goes raw
                bits = edge.planes[k].copy()
                out.raw_bits += n
                out.plane_bits.append(n)
                break
            out.requests += 1
            sent = edge.request(k, count)
            if count not in codes:
                codes[count] = spec.merged_code(count)
            positions, chk, var = codes[count]
            word, ok, _ = bp(chk, var, n, len(positions), llr, spec.merged_syndrome(sent, count), spec.bp_iterations)
            out.bp_attempts += 1
            if ok and plane_check(word, CHECK_BITS) == edge.checks[k]:
                bits = word
                out.syndrome_bits += count
                out.check_bits += CHECK_BITS
                out.plane_bits.append(count + CHECK_BITS)
                break
            out.wasted_bits += count if count + STEP_BITS > RAW_FRACTION * n else 0
            count += STEP_BITS
        bit = bits.reshape(c, nb).astype(np.int64)
        # the decoded bit halves every interval (escapes keep theirs: their bit matches already)
        free = lo != hi
        lo = np.where(free & (bit == 1), lo + (1 << k), lo)
        hi = np.where(free & (bit == 0), lo + (1 << k) - 1, hi)
    assert (lo == hi).all()
    q = lo.reshape(-1) + spec.offset
    q[edge.escape_positions] = edge.escape_values
    out.symbols = q
    return out


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def mixture_bits(symbols: np.ndarray, centres: np.ndarray, scale: np.ndarray, spec: SyndromeSpec) -> float:
    """Ideal bits of a tile's indices under the decoder's own model (per block, −log2 of the mean over
    candidates of Π_c P_d(index), escapes' indices included): what an ideal Slepian–Wolf coder with
    this model would need (:func:`decode_tile` approaches it from above, per-bit LLRs losing the rest)."""
    top = (1 << spec.index_bits) - 1
    j = np.clip(np.asarray(symbols, np.int64) - spec.offset, 0, top)
    a = np.where(j <= 0, -np.inf, spec.offset + j - 0.5)
    b = np.where(j >= top, np.inf, spec.offset + j + 0.5)
    s = scale.reshape(-1, 1)
    loglik = np.stack([np.log((1 - UNIFORM_MIX) * _laplace_interval(a, b, mu, s) + UNIFORM_MIX / (top + 1)).sum(0)
                       for mu in centres])  # (D, N)
    best = loglik.max(axis=0)
    log_mean = best + np.log(np.exp(loglik - best).mean(axis=0))
    return float(-log_mean.sum() / np.log(2))


__all__ = ["TileBits", "TileResult", "decode_tile", "encode_tile", "mixture_bits", "quantise_scale", "tile_spec",
           "check_to_bits"]
