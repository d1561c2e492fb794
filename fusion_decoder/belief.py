"""Decoding a syndrome source: LLRs from the conditional model, belief propagation, requests.

Pure logic (no sockets, no clock): :class:`SyndromeDecoder` turns what the decoder holds of
one window of a syndrome source (its initial payload, the accumulated-syndrome bits it
requested since, the side sources' symbols) into either the source's symbols or the next
request: "plane k: send accumulated bits [a, b)", or, past ``max_requests``, "send the
direct payload". The serving stage (:mod:`fusion_decoder.binning`) and the offline
measurement (``training.binning``) both drive it, so live bits equal offline bits.

BP "converges" as soon as its word satisfies the checks received, and with few checks a
wrong word often does. When the bundle's record carries plane checks (``check_bits`` > 0),
a converged plane is accepted only if its check matches the payload's; otherwise the attempt
counts as failed and asks for more bits exactly as a BP failure does (so past ``max_requests``
the window falls back to its direct payload, never to a wrong word).

Belief propagation: the ``ldpc`` package's sum-product decoder (C++, maintained) by default;
:func:`bp_numpy`, a plain NumPy sum-product, is kept as the cross-check
(``tests/binning/test_belief.py``) and as the fallback where ``ldpc`` is not installed.
:func:`fusion_decoder.belief_torch.bp_batch` takes :func:`bp_numpy`'s steps in torch, many
problems (tiles) as one graph, on the GPU where there is one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ndsc.binning import RAW, SKIP, PayloadBits, SyndromeSpec
from ndsc.entropy import LatentCoder

#: LLRs are clipped here: a model probability of exactly 0 must not make BP unable to move
_LLR_CLIP = 30.0
_TANH_CLIP = 1.0 - 1e-12

BP = Callable[[np.ndarray, np.ndarray, int, int, np.ndarray, np.ndarray, int], tuple[np.ndarray, bool, int]]


def bp_numpy(chk: np.ndarray, var: np.ndarray, n: int, m: int, llr: np.ndarray, syndrome: np.ndarray,
             iterations: int) -> tuple[np.ndarray, bool, int]:
    """Sum-product BP on the coset {b : H·b = syndrome} (H given as edges ``chk``, ``var``).

    ``llr``: log P(b=0)/P(b=1) per bit. Returns (bits, whether they satisfy the syndrome, iterations run).
    """
    llr = np.clip(np.asarray(llr, np.float64), -_LLR_CLIP, _LLR_CLIP)
    syndrome = np.asarray(syndrome, np.uint8)
    bits = (llr < 0).astype(np.uint8)

    def satisfied(b: np.ndarray) -> bool:
        return bool(np.array_equal(np.bincount(chk, weights=b[var], minlength=m).astype(np.int64) & 1, syndrome))

    if satisfied(bits):
        return bits, True, 0
    flip = (1.0 - 2.0 * syndrome.astype(np.float64))[chk]
    msg_vc = llr[var]
    for it in range(1, iterations + 1):
        t = np.tanh(np.clip(msg_vc / 2, -19, 19))
        mag = np.log(np.maximum(np.abs(t), 1e-300))
        neg = (t < 0).astype(np.float64)
        mag_sum = np.bincount(chk, weights=mag, minlength=m)
        neg_sum = np.bincount(chk, weights=neg, minlength=m)
        sign = np.where(((neg_sum[chk] - neg) % 2) > 0.5, -1.0, 1.0) * flip
        val = np.clip(sign * np.exp(mag_sum[chk] - mag), -_TANH_CLIP, _TANH_CLIP)
        msg_cv = 2.0 * np.arctanh(val)
        total = llr + np.bincount(var, weights=msg_cv, minlength=n)
        bits = (total < 0).astype(np.uint8)
        if satisfied(bits):
            return bits, True, it
        msg_vc = total[var] - msg_cv
    return bits, False, iterations


def _ldpc_bp_on_errors(chk: np.ndarray, var: np.ndarray, n: int, m: int, llr: np.ndarray, syndrome: np.ndarray,
                      iterations: int):
    """The ``ldpc`` package's product-sum BP on the error pattern e = bits ⊕ y, y = [llr < 0].

    Returns (y, H as CSR, e's syndrome, the decoder after decoding or None when y already meets the
    syndrome, BP's e)."""
    import scipy.sparse as sp
    from ldpc import BpDecoder

    llr = np.clip(np.asarray(llr, np.float64), -_LLR_CLIP, _LLR_CLIP)
    y = (llr < 0).astype(np.uint8)
    h = sp.csr_matrix((np.ones(len(chk), np.uint8), (chk, var)), shape=(m, n))
    target = ((np.asarray(syndrome, np.int64) ^ (np.bincount(chk, weights=y[var], minlength=m).astype(np.int64) & 1))
              .astype(np.uint8))
    if not target.any():
        return y, h, target, None, np.zeros(n, np.uint8)
    probs = 1.0 / (1.0 + np.exp(np.abs(llr)))
    dec = BpDecoder(h, error_channel=probs.tolist(), max_iter=iterations, bp_method="product_sum", schedule="parallel",
                    input_vector_type="syndrome")  # stated: ldpc cannot infer it for a square matrix
    return y, h, target, dec, np.asarray(dec.decode(target), dtype=np.uint8)


def bp_ldpc(chk: np.ndarray, var: np.ndarray, n: int, m: int, llr: np.ndarray, syndrome: np.ndarray,
            iterations: int) -> tuple[np.ndarray, bool, int]:
    """The same decoding with the ``ldpc`` package's product-sum BpDecoder.

    ldpc decodes an error pattern e from its syndrome under independent flip probabilities,
    so the side information's hard decision y = [llr < 0] is the "received word", the bits are
    y ⊕ e, e's syndrome is syndrome ⊕ H·y and bit i flips with probability 1 / (1 + e^|llr_i|).
    """
    y, _, _, dec, e = _ldpc_bp_on_errors(chk, var, n, m, llr, syndrome, iterations)
    if dec is None:
        return y, True, 0
    return y ^ e, bool(dec.converge), int(dec.iter)


#: :func:`bp_osd`: ordered-statistics search over at most this many columns per matrix row (then all)
OSD_COLUMNS_PER_ROW = 4
#: :func:`bp_osd`: the least reliable free columns flipped, singly and in pairs (OSD-CS order)
OSD_ORDER = 12


def _gf2_reduce(sub: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Gauss–Jordan over GF(2) of ``sub`` (m × L, 0/1) augmented with ``target`` (m,), pivots taken
    in column order (so the first columns, the least reliable ones, become the pivots).

    Returns the pivot columns, the reduced rows (rank × L) and target (rank,), and whether the system
    is consistent. Rows are packed 64 columns to a word, so a pivot costs one XOR of the rows it hits.
    """
    m, width = sub.shape
    packed = np.packbits(np.concatenate([sub, target[:, None]], axis=1).astype(np.uint8), axis=1, bitorder="little")
    words = np.ascontiguousarray(np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))).view(np.uint64)
    rank, pivots = 0, []
    for j in range(width):
        w, b = divmod(j, 64)
        hits = np.flatnonzero((words[:, w] >> np.uint64(b)) & np.uint64(1))
        below = hits[hits >= rank]
        if below.size == 0:
            continue
        if below[0] != rank:
            words[[rank, below[0]]] = words[[below[0], rank]]
            hits = np.flatnonzero((words[:, w] >> np.uint64(b)) & np.uint64(1))
        others = hits[hits != rank]
        if others.size:
            words[others] ^= words[rank]
        pivots.append(j)
        rank += 1
        if rank == m:
            break
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :width + 1]
    return np.asarray(pivots, np.int64), bits[:rank, :width], bits[:rank, width], not bits[rank:, width].any()


def bp_osd(chk: np.ndarray, var: np.ndarray, n: int, m: int, llr: np.ndarray, syndrome: np.ndarray,
           iterations: int, order: int = OSD_ORDER) -> tuple[np.ndarray, bool, int]:
    """:func:`bp_ldpc`, and where BP does not converge, ordered-statistics decoding (BP-OSD,
    Fossorier & Lin; Panteleev & Kalachev) on BP's soft output: the columns sorted by how sure BP
    is, Gauss–Jordan on the least reliable :data:`OSD_COLUMNS_PER_ROW` · m of them (more if they do
    not span the syndrome), every other bit fixed at BP's decision, the pivots solved; then the
    ``order`` least reliable free bits flipped singly and in pairs, keeping the word whose flipped
    bits cost least under ``llr`` (the most likely of those tried).

    It returns a word that satisfies the syndrome whenever one exists, right or wrong, so a caller
    must verify it (the plane checks: with this decoder every attempt yields a candidate, so use
    32-bit ones). The ``ldpc`` package's own OSD runs over all n columns, which takes seconds to
    minutes at n = 12 288; with m ≪ n only the few least reliable columns matter.
    """
    y, h, target, dec, e = _ldpc_bp_on_errors(chk, var, n, m, llr, syndrome, iterations)
    if dec is None:
        return y, True, 0
    if dec.converge:
        return y ^ e, True, int(dec.iter)
    llr = np.clip(np.asarray(llr, np.float64), -_LLR_CLIP, _LLR_CLIP)
    h = h.tocsc()  # OSD takes column slices
    soft = np.asarray(dec.log_prob_ratios, np.float64)  # log P(e = 0) / P(e = 1) after BP
    e_bp = (soft < 0).astype(np.uint8)
    columns = np.argsort(np.abs(soft), kind="stable")  # least reliable first
    width = min(n, OSD_COLUMNS_PER_ROW * m + 64)
    while True:
        chosen, rest = columns[:width], columns[width:]
        t = (target ^ ((h[:, rest] @ e_bp[rest]) & 1)).astype(np.uint8)
        pivots, reduced, t_reduced, consistent = _gf2_reduce(h[:, chosen].toarray(), t)
        if consistent or width == n:
            break
        width = min(n, 2 * width)
    if not consistent:
        return y ^ e, False, int(dec.iter)
    free = np.setdiff1d(np.arange(width), pivots)
    free_cols, pivot_cols = chosen[free], chosen[pivots]
    cost = np.abs(llr)  # the cost of flipping bit i against the side's hard decision

    def pivots_for(ones: np.ndarray) -> np.ndarray:
        """The pivot bits solving the system when the free bits ``ones`` (indices into free) are 1."""
        return t_reduced ^ (np.bitwise_xor.reduce(reduced[:, free[ones]], axis=1) if ones.size else 0)

    base = e_bp[free_cols]
    best = e_bp.copy()
    best[pivot_cols] = pivots_for(np.flatnonzero(base))
    # OSD-CS: flipping free bit a moves the pivots by reduced column a; cost changes computed at once
    flip = np.argsort(np.abs(soft[free_cols]), kind="stable")[:order]
    combos = [(a,) for a in flip] + [(a, b) for i, a in enumerate(flip) for b in flip[i + 1:]]
    if combos:
        base_pivots = best[pivot_cols]
        moved = np.stack([np.bitwise_xor.reduce(reduced[:, free[list(c)]], axis=1) for c in combos], axis=1)
        new_pivots = base_pivots[:, None] ^ moved
        delta = cost[pivot_cols] @ (new_pivots.astype(np.float64) - base_pivots[:, None])
        delta += np.array([sum((1 - 2 * int(base[a])) * cost[free_cols[a]] for a in c) for c in combos])
        k = int(np.argmin(delta))
        if delta[k] < 0:
            best[pivot_cols] = new_pivots[:, k]
            best[free_cols[list(combos[k])]] ^= 1
    return y ^ best, True, int(dec.iter)


def default_bp() -> BP:
    """:func:`bp_ldpc` when the ``ldpc`` package is installed, else :func:`bp_numpy`."""
    try:
        import ldpc  # noqa: F401
    except ImportError:
        return bp_numpy
    return bp_ldpc


def plane_llr(rows: np.ndarray, low: np.ndarray, k: int) -> np.ndarray:
    """log P(bit k = 0)/P(bit k = 1) per position given the lower planes' bits ``low``.

    ``rows`` (n, K): per position the model's p(index | side information).
    """
    j = np.arange(rows.shape[1])
    consistent = (j[None, :] & ((1 << k) - 1)) == low[:, None]
    bit = ((j >> k) & 1)[None, :]
    p0 = (rows * (consistent & (bit == 0))).sum(1)
    p1 = (rows * (consistent & (bit == 1))).sum(1)
    return np.log(np.maximum(p0, 1e-300)) - np.log(np.maximum(p1, 1e-300))


@dataclass(frozen=True)
class Request:
    """What the decoder asks the edge for: accumulated bits [first, end) of ``plane``, or the
    window's direct payload (``direct``)."""

    plane: int = 0
    first: int = 0
    end: int = 0
    direct: bool = False


@dataclass
class WindowSyndrome:
    """What the decoder holds of one window of one syndrome source.

    Attributes:
        payload: per raw / syndrome plane its bits from the window's payload.
        checks: per syndrome plane the check value the payload carried (empty without checks).
        extra: per syndrome plane the accumulated bits received since, in transmission order.
        decoded: planes decoded so far (their bits), lowest first.
        requests: requests sent for this window.
        direct: the direct payload once it arrived (fallback).
        iterations: BP iterations spent, every attempt.
        pending: the request awaiting an answer.
    """

    payload: dict[int, np.ndarray]
    checks: dict[int, int] = field(default_factory=dict)
    extra: dict[int, np.ndarray] = field(default_factory=dict)
    decoded: list[np.ndarray] = field(default_factory=list)
    requests: int = 0
    direct: bytes | None = None
    iterations: int = 0
    pending: Request | None = None

    def received(self, plane: int) -> np.ndarray:
        """Every accumulated bit of ``plane`` held, in transmission order."""
        got = self.payload[plane]
        more = self.extra.get(plane)
        return got if more is None else np.concatenate([got, more])


@dataclass(frozen=True)
class Outcome:
    """One decoding attempt: ``symbols`` (M·L) when done, else the ``request`` to send;
    ``check_failed``: BP converged on a plane whose check did not match (a wrong word caught)."""

    symbols: np.ndarray | None
    request: Request | None
    iterations: int
    check_failed: bool = False


class SyndromeDecoder:
    """Decodes one syndrome source of a bundle.

    Args:
        spec: the source's binning record.
        coder: the source's entropy coder (the direct fallback payload).
        bp: the belief-propagation function (:func:`default_bp`).
    """

    def __init__(self, spec: SyndromeSpec, coder: LatentCoder, latent_shape: tuple[int, ...], bp: BP | None = None):
        self.spec = spec
        self.coder = coder
        self.latent_shape = latent_shape
        self.bp = bp or default_bp()
        cond = spec.conditional
        if cond.get("kind") != "table":
            raise ValueError(f"unknown conditional model {cond.get('kind')!r}")
        probs = np.asarray(cond["probs"], dtype=np.float64)
        self.side_offset = int(cond["side_offset"])
        self.cond = probs / np.maximum(probs.sum(1, keepdims=True), 1e-300)
        self._codes: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # received → merged code

    def start(self, payload_bits: PayloadBits) -> WindowSyndrome:
        """The state of a window from its split payload (``SyndromeSpec.split_payload``)."""
        return WindowSyndrome(payload_bits, payload_bits.checks)

    def rows(self, side: np.ndarray) -> np.ndarray:
        """(n, K) model rows for the side source's symbols (flattened like this source's)."""
        i = np.clip(np.asarray(side, np.int64).reshape(-1) - self.side_offset, 0, self.cond.shape[0] - 1)
        return self.cond[i]

    def _merged(self, received: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        code = self._codes.get(received)
        if code is None:
            if len(self._codes) > 256:
                self._codes.clear()
            code = self._codes[received] = self.spec.merged_code(received)
        return code

    def attempt(self, state: WindowSyndrome, side: np.ndarray | None) -> Outcome:
        """Decode as many planes as the bits held allow; the symbols, or the request that comes next.

        ``side``: the side source's symbols, None when it is missing (then only the direct
        payload can decode the window).
        """
        spec = self.spec
        if state.direct is not None:
            symbols = self.coder.decode(state.direct, spec.n // self.latent_shape[0]).reshape(-1)
            return Outcome(symbols, None, 0)
        if side is None:
            return Outcome(None, Request(direct=True), 0)
        rows = self.rows(side)
        low = np.zeros(spec.n, dtype=np.int64)
        for k, bits in enumerate(state.decoded):
            low |= bits.astype(np.int64) << k
        spent = 0
        while len(state.decoded) < spec.index_bits:
            k = len(state.decoded)
            plan = spec.plane(k)
            if plan.mode == RAW:
                bits = state.payload[k]
            elif plan.mode == SKIP:
                bits = (plane_llr(rows, low, k) < 0).astype(np.uint8)
            else:
                sent = state.received(k)
                positions, chk, var = self._merged(len(sent))
                syndrome = spec.merged_syndrome(sent, len(sent))
                bits, ok, its = self.bp(chk, var, spec.n, len(positions), plane_llr(rows, low, k), syndrome,
                                        spec.bp_iterations)
                spent += its
                state.iterations += its
                if not ok:
                    return Outcome(None, self._next_request(state, k, len(sent)), spent)
                if not spec.check_matches(k, bits, state.checks):  # a wrong word that satisfies the checks held
                    return Outcome(None, self._next_request(state, k, len(sent)), spent, check_failed=True)
            state.decoded.append(bits)
            low |= bits.astype(np.int64) << k
        return Outcome(spec.symbols_of(low), None, spent)

    def _next_request(self, state: WindowSyndrome, plane: int, held: int) -> Request:
        if state.requests >= self.spec.max_requests or held >= self.spec.n:
            return Request(direct=True)
        return Request(plane, held, min(held + self.spec.step_bits, self.spec.n))

    def take(self, state: WindowSyndrome, request: Request, bits_or_payload: bytes | np.ndarray) -> None:
        """Record the answer to ``request`` (accumulated bits, or the direct payload)."""
        if request.direct:
            state.direct = bytes(bits_or_payload)  # type: ignore[arg-type]
            return
        more = np.asarray(bits_or_payload, np.uint8)
        old = state.extra.get(request.plane)
        state.extra[request.plane] = more if old is None else np.concatenate([old, more])
