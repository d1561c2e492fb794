"""An independent implementation of docs/bitstream.md in plain Python (no numpy, no constriction).

Written from the document, not from ``ndsc.entropy``: tests/test_bitstream.py checks that it
writes the library's bytes and the checked-in reference vectors, which is what lets an edge in
another language write payloads. Integers only; every step names the section it implements.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

PRECISION = 24          # §2: probabilities are weights out of 2**24
TOTAL = 1 << PRECISION
WORD_BITS = 32          # §3: words are uint32, the state 64 bits
ESCAPE_BITS_ALPHABET = 25


def cumulative(freqs: Sequence[int], version: int) -> list[int]:
    """§2: the K + 1 cumulative weights c_0 = 0 .. c_K = 2**24 of one table."""
    k_syms = len(freqs)
    prefix = [0]
    for f in freqs:
        prefix.append(prefix[-1] + f)
    if version == 2:
        return [p << 8 for p in prefix]
    if version == 1:
        return [k + prefix[k] * (TOTAL - k_syms) // (1 << 16) for k in range(k_syms)] + [TOTAL]
    raise ValueError(f"unknown version {version}")


def uniform(n: int, s: int) -> tuple[int, int]:
    """§2: (c, w) of symbol s under the uniform model over 0..n-1."""
    per = TOTAL // n
    return (s * per, per) if s < n - 1 else ((n - 1) * per, TOTAL - (n - 1) * per)


def uniform_lookup(n: int, q: int) -> int:
    return min(q // (TOTAL // n), n - 1)


def symbol_stream(tables: Sequence[tuple[int, Sequence[int]]], rows: Sequence[Sequence[int]],
                  version: int) -> list[tuple[int, int]]:
    """§4: every coded symbol as (c, w), in decode order."""
    out: list[tuple[int, int]] = []
    escapes: list[int] = []
    for (offset, freqs), row in zip(tables, rows):
        c = cumulative(freqs, version)
        esc, low, high = len(freqs) - 1, offset, offset + len(freqs) - 2
        for v in row:
            k = v - offset if low <= v <= high else esc
            out.append((c[k], c[k + 1] - c[k]))
            if k == esc:
                escapes.append(v - low if v < low else v - high)
    for delta in escapes:  # §5
        m = abs(delta)
        b = m.bit_length()
        out.append(uniform(2, 1 if delta > 0 else 0))
        out.append(uniform(ESCAPE_BITS_ALPHABET, b))
        if b > 1:
            out.append(uniform(1 << (b - 1), m - (1 << (b - 1))))
    return out


def encode(tables: Sequence[tuple[int, Sequence[int]]], rows: Sequence[Sequence[int]], version: int = 2) -> bytes:
    """§3: the payload of ``rows`` (one list of ints per channel)."""
    data = b"".join(w.to_bytes(4, "little") for w in rans_words(symbol_stream(tables, rows, version)))
    return data.rstrip(b"\x00")


def rans_words(spans: Sequence[tuple[int, int]]) -> list[int]:
    """§3's encoder: the words (after the flush) of the symbols (c, w), given in decode order."""
    x, words = 0, []
    for c, w in reversed(spans):
        if (x >> (64 - PRECISION)) >= w:
            words.append(x & 0xFFFFFFFF)
            x >>= WORD_BITS
        x = ((x // w) << PRECISION) + c + x % w
    if x:
        words.append(x & 0xFFFFFFFF)
        if x >> WORD_BITS:
            words.append(x >> WORD_BITS)
    return words


def prior_weight0(masses: Sequence[int], lo: int, hi: int, k: int) -> int:
    """§8: bit k's weight of 0 for an index in [lo, hi] under one channel's index masses."""
    mid = min(lo + (1 << k), hi + 1)
    w0 = (sum(masses[lo:mid]) << PRECISION) // sum(masses[lo:hi + 1])
    return min(max(w0, 1 << 4), TOTAL - (1 << 4))


class _Decoder:
    """§3 decoding: pops symbols in the order they were written."""

    def __init__(self, payload: bytes):
        if payload[-1:] == b"\x00":
            raise ValueError("payload ends in a zero byte")
        padded = payload + b"\x00" * (-len(payload) % 4)
        self.words = [int.from_bytes(padded[i:i + 4], "little") for i in range(0, len(padded), 4)]
        self.x = self.words.pop() if self.words else 0
        if self.words:
            self.x = (self.x << WORD_BITS) | self.words.pop()

    def pop(self, lookup, span) -> int:
        q = self.x & (TOTAL - 1)
        s = lookup(q)
        c, w = span(s)
        self.x = w * (self.x >> PRECISION) + q - c
        if self.x < (1 << WORD_BITS) and self.words:
            self.x = (self.x << WORD_BITS) | self.words.pop()
        return s

    def pop_table(self, c: list[int]) -> int:
        return self.pop(lambda q: bisect_right(c, q) - 1, lambda k: (c[k], c[k + 1] - c[k]))

    def pop_uniform(self, n: int) -> int:
        return self.pop(lambda q: uniform_lookup(n, q), lambda s: uniform(n, s))


def decode(tables: Sequence[tuple[int, Sequence[int]]], payload: bytes, length: int,
           version: int = 2) -> list[list[int]]:
    """§3–§5: the rows of ``length`` ints that ``payload`` codes; raises ValueError if it is not one."""
    dec = _Decoder(payload)
    rows, escaped = [], []
    for ch, (offset, freqs) in enumerate(tables):
        c = cumulative(freqs, version)
        row = [dec.pop_table(c) for _ in range(length)]
        escaped += [(ch, i) for i, k in enumerate(row) if k == len(freqs) - 1]
        rows.append([offset + k for k in row])
    for ch, i in escaped:
        offset, freqs = tables[ch]
        low, high = offset, offset + len(freqs) - 2
        positive = dec.pop_uniform(2) == 1
        b = dec.pop_uniform(ESCAPE_BITS_ALPHABET)
        if b < 1:
            raise ValueError("escape with bit length 0")
        m = (1 << (b - 1)) + (dec.pop_uniform(1 << (b - 1)) if b > 1 else 0)
        rows[ch][i] = high + m if positive else low - m
    if dec.x != 0 or dec.words:
        raise ValueError("data left after the last symbol")
    return rows
