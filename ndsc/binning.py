"""Syndrome coding of a source's symbols: the bit-exact part the edge and the decoder share.

A bundle source with ``coding: syndrome`` sends no entropy-coded symbols. Its integer
symbols q (M, L) become indices ``j = clip(q − offset, 0, 2^B − 1)`` (B = ``index_bits``),
split into B bit planes (plane k: bit k of j, least significant first), each of
n = M·L bits (channel-major, then position, as the symbols). Each plane has a mode:

* ``raw``: its n bits are sent as they are;
* ``syndrome``: bits of its **accumulated syndrome** (LDPC-accumulate, Varodayan et al.
  2006) are sent, the first ``initial_bits`` in the window's payload and more on the
  decoder's request (:func:`transmission_order` fixes which positions, and in what order),
  followed in the payload by the plane's ``check_bits``-bit CRC (:func:`plane_check`), so
  the decoder can tell a right word from a wrong one that merely satisfies the checks received;
* ``skip``: nothing is sent; the decoder takes its most likely value.

The code is the bundle's n × n parity-check matrix H (``checks[r]``: the bit indices of
row r), frozen at export. For a plane's bits b: ``s = H·b mod 2`` (n bits) and the
accumulated syndrome ``a[p] = s[0] ⊕ … ⊕ s[p]``. A decoder holding the accumulated bits at
sorted positions p_1 < … < p_m (p_m = n − 1 always, as it is sent first) knows the parity of
each block of rows (p_{t−1}, p_t]: the code of rate m/n whose check t is the sum of those
rows. More positions refine the blocks, so every rate is nested in the next (rate
compatible): a request adds bits, never replaces them. The exact bytes are in
``docs/bitstream.md`` §7.

Typical workflow (edge)::

    spec = SyndromeSpec.from_json(source_json["binning"])
    planes = spec.planes_of(symbols)                # (B, n) uint8
    payload = spec.initial_payload(planes)          # the frame's bytes
    more = pack_bits(spec.accumulated(planes[k])[spec.order[a:b]])   # a request for [a, b)
"""

from __future__ import annotations

import binascii
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np

#: plane modes
RAW, SYNDROME, SKIP = "raw", "syndrome", "skip"
#: the only transmission order defined so far (docs/bitstream.md §7)
ORDER_RULE = "vdc2"
#: the plane checks defined (docs/bitstream.md §7): none, CRC-16/XMODEM, CRC-32
CHECK_BITS = (0, 16, 32)
#: the check new exports use. A wrong word BP converges to differs from the plane by a codeword of
#: the merged code, often of low weight (2–4 wrong symbols in the measured cases): either CRC
#: catches every difference of ≤ 3 bits, and any other with probability 1 − 2⁻¹⁶ (CRC-16) or
#: 1 − 2⁻³². The check costs its bits per syndrome plane and window: with CRC-16, 0.004 bits/sample
#: at n = 4096 (one syndrome plane) and 0.094 at n = 512 with three, half CRC-32's; measured in
#: docs/binning.md.
DEFAULT_CHECK_BITS = 16


class SyndromeError(ValueError):
    """A syndrome payload or block that does not fit the bundle's binning record."""


def transmission_order(n: int) -> np.ndarray:
    """Positions of the accumulated syndrome in the order they are sent (a permutation of 0..n−1).

    ``n − 1`` first (the parity of all rows), then the positions ⌊j·n / 2^L⌋ − 1 for levels
    L = 1, 2, … and odd j < 2^L in van der Corput order (j = 2·rev_{L−1}(i) + 1 for
    i = 0 … 2^{L−1} − 1, rev_b reversing b bits), skipping positions already listed or
    negative, until every position is listed. Any prefix splits the rows into blocks of
    nearly equal size, so the code at every rate is nearly regular.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    order = [n - 1]
    seen = {n - 1}
    level = 1
    while len(order) < n:
        bits = level - 1
        for i in range(1 << bits):
            rev = int(f"{i:0{bits}b}"[::-1], 2) if bits else 0
            p = ((2 * rev + 1) * n >> level) - 1
            if p >= 0 and p not in seen:
                seen.add(p)
                order.append(p)
        level += 1
    return np.asarray(order, dtype=np.int64)


def pack_bits(bits: np.ndarray) -> bytes:
    """Bits (0/1) → bytes, most significant bit first, the last byte padded with zeros."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def unpack_bits(data: bytes, count: int) -> np.ndarray:
    """The first ``count`` bits of ``data`` (MSB first) as uint8.

    Raises:
        SyndromeError: ``data`` is not exactly ⌈count/8⌉ bytes, or its padding bits are not 0.
    """
    if len(data) != (count + 7) // 8:
        raise SyndromeError(f"{len(data)} bytes for {count} bits (expected {(count + 7) // 8})")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[count:].any():
        raise SyndromeError("padding bits after the last bit are not zero")
    return bits[:count]


def plane_check(bits: np.ndarray, check_bits: int) -> int:
    """The check of a plane's n bits, packed MSB first into ⌈n/8⌉ bytes (the last byte padded with
    0): CRC-16/XMODEM (polynomial 0x1021, initial value 0) for 16 bits, CRC-32 (zlib's, as the
    frames' crc32) for 32. Both detect every difference of at most 3 bits in the blocks used here
    (Hamming distance 4 up to 32 751 and 91 607 data bits), which a truncated CRC would not."""
    data = pack_bits(bits)
    if check_bits == 16:
        return binascii.crc_hqx(data, 0)
    if check_bits == 32:
        return zlib.crc32(data)
    raise SyndromeError(f"no plane check of {check_bits} bits (defined: {CHECK_BITS[1:]})")


def check_to_bits(value: int, check_bits: int) -> np.ndarray:
    """A check value as ``check_bits`` bits, most significant first."""
    return ((value >> np.arange(check_bits - 1, -1, -1)) & 1).astype(np.uint8)


class PayloadBits(dict):
    """A split payload: plane → its bits (raw: the plane; syndrome: its first ``initial_bits``
    accumulated bits), and in :attr:`checks` each syndrome plane's check value (none when the
    record's ``check_bits`` is 0). A dict, so code that only needs the bits keeps working."""

    def __init__(self, bits: dict[int, np.ndarray], checks: dict[int, int]):
        super().__init__(bits)
        self.checks = checks


@dataclass(frozen=True)
class PlanePlan:
    """One bit plane's mode and, for a syndrome plane, the accumulated bits the payload carries."""

    plane: int
    mode: str
    initial_bits: int = 0

    def to_json(self) -> dict:
        return {
            "plane": self.plane,
            "mode": self.mode,
            **({"initial_bits": self.initial_bits} if self.mode == SYNDROME else {}),
        }


@dataclass(frozen=True)
class SyndromeSpec:
    """A syndrome source's binning record (manifest ``sources[i].binning``).

    Attributes:
        side_sources: the sources decoded before this one whose symbols the conditional
            model conditions on (decode order: they come first).
        offset: symbol value of index 0.
        index_bits: B, the number of bit planes.
        planes: per plane, its mode (every plane 0 … B−1 once, in order).
        checks: the n rows of the base parity-check matrix, each a sorted list of bit indices.
        step_bits: accumulated bits the decoder asks for per request.
        max_requests: requests per window at most; the next one asks for the direct payload.
        bp_iterations: belief-propagation iterations per decoding attempt.
        conditional: the decoder's model p(index | side symbol), ``{"kind": "table",
            "side_offset": o, "probs": [[…] per side index]}`` (floats; only the decoder uses it).
        check_bits: bits of each syndrome plane's check in the payload (:func:`plane_check`:
            16 or 32); 0: none (bundles exported before the check), the decoder then accepts any word BP
            finds that satisfies the checks received.
    """

    side_sources: tuple[int, ...]
    offset: int
    index_bits: int
    planes: tuple[PlanePlan, ...]
    checks: tuple[tuple[int, ...], ...]
    step_bits: int
    max_requests: int
    bp_iterations: int
    conditional: dict[str, Any]
    order_rule: str = ORDER_RULE
    check_bits: int = 0

    @property
    def n(self) -> int:
        """Bits per plane (= symbols per window, M·L)."""
        return len(self.checks)

    @cached_property
    def order(self) -> np.ndarray:
        return transmission_order(self.n)

    @cached_property
    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, bit) of every edge of the base matrix."""
        rows = np.repeat(np.arange(self.n), [len(c) for c in self.checks])
        cols = np.fromiter((b for c in self.checks for b in c), dtype=np.int64, count=len(rows))
        return rows, cols

    def _payload_bits(self, p: PlanePlan) -> int:
        """Bits plane ``p`` takes in the window's payload."""
        return self.n if p.mode == RAW else p.initial_bits + self.check_bits if p.mode == SYNDROME else 0

    @property
    def initial_bits(self) -> int:
        """Bits of the window's payload: n per raw plane, ``initial_bits`` + ``check_bits`` per syndrome plane."""
        return sum(self._payload_bits(p) for p in self.planes)

    @property
    def payload_bytes(self) -> int:
        return (self.initial_bits + 7) // 8

    def plane(self, k: int) -> PlanePlan:
        return self.planes[k]

    # --- edge -------------------------------------------------------------------------
    def indices(self, symbols: np.ndarray) -> np.ndarray:
        """Symbols (any shape, n values) → indices 0 … 2^B − 1, flattened in C order (clipped)."""
        return np.clip(np.asarray(symbols, dtype=np.int64).reshape(-1) - self.offset, 0, (1 << self.index_bits) - 1)

    def symbols_of(self, indices: np.ndarray) -> np.ndarray:
        """Indices → the symbol values they stand for."""
        return np.asarray(indices, dtype=np.int64) + self.offset

    def planes_of(self, symbols: np.ndarray) -> np.ndarray:
        """(B, n) uint8: plane k is bit k of every index."""
        j = self.indices(symbols)
        if j.size != self.n:
            raise SyndromeError(f"{j.size} symbols for a code of {self.n} bits")
        return ((j[None, :] >> np.arange(self.index_bits)[:, None]) & 1).astype(np.uint8)

    def accumulated(self, bits: np.ndarray) -> np.ndarray:
        """a[p] = s[0] ⊕ … ⊕ s[p] for s = H·bits mod 2 (n bits, uint8)."""
        rows, cols = self.edges
        s = np.bincount(rows, weights=np.asarray(bits, dtype=np.int64)[cols], minlength=self.n).astype(np.int64) & 1
        return (np.cumsum(s) & 1).astype(np.uint8)

    def sent_bits(self, bits: np.ndarray, first: int, end: int) -> np.ndarray:
        """Accumulated-syndrome bits at ``order[first:end]`` of a plane's ``bits``."""
        return self.accumulated(bits)[self.order[first:end]]

    def initial_payload(self, planes: np.ndarray) -> bytes:
        """The window's payload: per plane in order, raw bits or the first ``initial_bits``
        accumulated bits and the plane's check, concatenated and packed (MSB first)."""
        parts = []
        for p in self.planes:
            if p.mode == RAW:
                parts.append(planes[p.plane])
            elif p.mode == SYNDROME:
                parts.append(self.sent_bits(planes[p.plane], 0, p.initial_bits))
                if self.check_bits:
                    parts.append(check_to_bits(plane_check(planes[p.plane], self.check_bits), self.check_bits))
        return pack_bits(np.concatenate(parts) if parts else np.zeros(0, np.uint8))

    # --- decoder ----------------------------------------------------------------------
    def split_payload(self, payload: bytes) -> PayloadBits:
        """A payload → per raw or syndrome plane its bits (raw: the plane; syndrome: its first
        ``initial_bits`` accumulated bits) and each syndrome plane's check value.

        Raises:
            SyndromeError: a payload of another length, or non-zero padding.
        """
        bits = unpack_bits(payload, self.initial_bits)
        out, checks, pos = {}, {}, 0
        for p in self.planes:
            count = self._payload_bits(p)
            if count:
                out[p.plane] = bits[pos : pos + (self.n if p.mode == RAW else p.initial_bits)]
            if p.mode == SYNDROME and self.check_bits:
                check = bits[pos + p.initial_bits : pos + count]
                checks[p.plane] = int(check.astype(np.int64) @ (1 << np.arange(self.check_bits - 1, -1, -1)))
            pos += count
        return PayloadBits(out, checks)

    def check_matches(self, plane: int, bits: np.ndarray, checks: dict[int, int]) -> bool:
        """Whether a decoded syndrome plane's ``bits`` match the check the payload carried
        (always, without checks: ``check_bits`` 0)."""
        return not self.check_bits or plane_check(bits, self.check_bits) == checks[plane]

    def mismatched_planes(self, symbols: np.ndarray, checks: dict[int, int]) -> list[int]:
        """Syndrome planes of ``symbols`` (a decoded window, e.g. from the direct payload) whose
        check differs from the payload's: the edge sent bits that contradict each other."""
        planes = self.planes_of(symbols)
        return [
            p.plane
            for p in self.planes
            if p.mode == SYNDROME and not self.check_matches(p.plane, planes[p.plane], checks)
        ]

    def merged_code(self, received: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The code the first ``received`` transmitted positions define.

        Returns (positions sorted, check index of every edge, bit index of every edge):
        check t sums the rows (positions[t−1], positions[t]]; a bit in an even number of
        those rows cancels.
        """
        if not 1 <= received <= self.n:
            raise SyndromeError(f"received {received} accumulated bits, need 1..{self.n}")
        positions = np.sort(self.order[:received])
        rows, cols = self.edges
        block = np.searchsorted(positions, rows)  # row r belongs to the first block ending at or after it
        pair = block * self.n + cols
        uniq, count = np.unique(pair, return_counts=True)
        odd = uniq[count % 2 == 1]
        return positions, odd // self.n, odd % self.n

    def merged_syndrome(self, sent: np.ndarray, received: int) -> np.ndarray:
        """Check values of :meth:`merged_code` from the accumulated bits ``sent`` (in transmission order)."""
        a = np.zeros(self.n, dtype=np.uint8)
        a[self.order[:received]] = sent[:received]
        positions = np.sort(self.order[:received])
        vals = a[positions]
        return vals ^ np.concatenate([[0], vals[:-1]]).astype(np.uint8)

    def to_json(self) -> dict:
        return {
            "side_sources": list(self.side_sources),
            "offset": self.offset,
            "index_bits": self.index_bits,
            "planes": [p.to_json() for p in self.planes],
            "code": {"n": self.n, "order": self.order_rule, "checks": [list(c) for c in self.checks]},
            "step_bits": self.step_bits,
            "max_requests": self.max_requests,
            "bp_iterations": self.bp_iterations,
            "conditional": self.conditional,
            # absent when 0: bundles exported before the check keep their bytes (and their id)
            **({"check_bits": self.check_bits} if self.check_bits else {}),
        }

    @classmethod
    def from_json(cls, obj: dict) -> "SyndromeSpec":
        """Raises SyndromeError for a record that is not self-consistent."""
        code = obj["code"]
        checks = tuple(tuple(sorted(int(b) for b in row)) for row in code["checks"])
        n = len(checks)
        if n != int(code["n"]) or n < 1:
            raise SyndromeError(f"code has {n} rows, declares n={code['n']}")
        if any(b < 0 or b >= n for row in checks for b in row) or any(len(set(r)) != len(r) for r in checks):
            raise SyndromeError("code rows must hold distinct bit indices below n")
        if code.get("order", ORDER_RULE) != ORDER_RULE:
            raise SyndromeError(f"unknown transmission order {code.get('order')!r}")
        bits = int(obj["index_bits"])
        planes = tuple(PlanePlan(int(p["plane"]), str(p["mode"]), int(p.get("initial_bits", 0))) for p in obj["planes"])
        if [p.plane for p in planes] != list(range(bits)):
            raise SyndromeError("planes must list 0 .. index_bits-1 in order")
        for p in planes:
            if p.mode not in (RAW, SYNDROME, SKIP) or (p.mode == SYNDROME and not 1 <= p.initial_bits <= n):
                raise SyndromeError(f"plane {p.plane}: bad mode {p.mode!r} or initial_bits {p.initial_bits}")
        spec = cls(
            side_sources=tuple(int(s) for s in obj["side_sources"]),
            offset=int(obj["offset"]),
            index_bits=bits,
            planes=planes,
            checks=checks,
            step_bits=int(obj["step_bits"]),
            max_requests=int(obj["max_requests"]),
            bp_iterations=int(obj["bp_iterations"]),
            conditional=dict(obj["conditional"]),
            check_bits=int(obj.get("check_bits", 0)),
        )
        if spec.step_bits < 1 or spec.max_requests < 0 or spec.bp_iterations < 1:
            raise SyndromeError("step_bits and bp_iterations must be >= 1, max_requests >= 0")
        if spec.check_bits not in CHECK_BITS:
            raise SyndromeError(f"check_bits must be one of {CHECK_BITS}, got {spec.check_bits}")
        if spec.conditional.get("kind") == "stereo-tiles":
            from ndsc.stereo_tiles import StereoTiles  # a stereo-tiled source (docs/bitstream.md §8)

            StereoTiles.of(spec)
        else:
            _check_conditional(spec.conditional, 1 << bits)
        return spec


def _check_conditional(cond: dict[str, Any], indices: int) -> None:
    """The decoder's model: a table with a row of ``indices`` non-negative probabilities per side symbol."""
    if cond.get("kind") != "table" or not isinstance(cond.get("side_offset"), int):
        raise SyndromeError("conditional must be {'kind': 'table', 'side_offset': int, 'probs': rows}")
    probs = np.asarray(cond.get("probs"), dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != indices or len(probs) < 1:
        raise SyndromeError(f"conditional probs must be rows of {indices} values (one per index)")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs.sum(1) <= 0).any():
        raise SyndromeError("conditional probs must be finite, non-negative, every row with some mass")


def random_checks(n: int, degree: int = 3, seed: int = 0) -> tuple[tuple[int, ...], ...]:
    """A random n × n parity-check matrix with every bit in ``degree`` rows (export only: the
    bundle stores the rows, so nothing depends on this generator later)."""
    rng = np.random.default_rng([seed, n, degree])
    sockets = np.repeat(np.arange(n), degree)
    rows = rng.permutation(np.arange(sockets.size) % n)
    table: list[set[int]] = [set() for _ in range(n)]
    for r, b in zip(rows.tolist(), sockets.tolist()):
        table[r] ^= {b}  # a repeated (row, bit) pair cancels, as it would in H mod 2
    return tuple(tuple(sorted(t)) for t in table)


def decode_order(codings: Sequence[str], sides: Sequence[Sequence[int]]) -> list[int]:
    """Sources in decode order: direct ones first (by index), then each syndrome source after
    its side sources.

    Raises:
        SyndromeError: a side source that is itself not decoded first (a cycle or a self-reference).
    """
    order = [i for i, c in enumerate(codings) if c != SYNDROME]
    rest = [i for i, c in enumerate(codings) if c == SYNDROME]
    while rest:
        ready = [i for i in rest if all(s in order for s in sides[i])]
        if not ready:
            raise SyndromeError(f"syndrome sources {rest} have side sources that are never decoded first")
        order += ready
        rest = [i for i in rest if i not in ready]
    return order
