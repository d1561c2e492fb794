"""Entropy coding of integer latents with constriction's ANS coder.

Every latent channel has a **static integer frequency table** (stored in the model
bundle) over a contiguous symbol range plus one escape symbol. Both the edge and the
decoder build their constriction models from these same integers, so coding is
bit-exact on any machine: nothing is recomputed from floats at coding time.

The payload bytes are specified in ``docs/bitstream.md`` (bitstream version 2): a
function of the integer tables and the symbols alone, which another implementation can
write and read without constriction. In short: the ANS words as little-endian
``uint32`` with the trailing zero bytes removed (a sealed ANS stream never ends in a zero
word, so the decoder restores them by padding to a multiple of four). The length is
carried by the container (a protobuf ``bytes`` field or a file record), never inside
the payload. Bundles that predate the version record (version 1) are still coded as
they were written: constriction re-quantised each table internally.

Typical workflow::

    tables = [ChannelTable(offset=-8, freqs=...), ...]     # from the bundle
    coder = LatentCoder(tables)
    payload = coder.encode(symbols)                         # symbols: (M, L) int
    assert (coder.decode(payload, symbols.shape[1]) == symbols).all()
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

import constriction
import numpy as np

_AnsCoder = constriction.stream.stack.AnsCoder  # a native extension: its submodules are attributes, not importable
_BIG_ENDIAN = sys.byteorder == "big"  # payload words are little-endian

#: Frequencies of every table sum to ``2**TABLE_PRECISION``.
TABLE_PRECISION = 16
#: Probability precision of the ANS coder: table frequency ``f`` codes with weight ``f << 8``.
CODER_PRECISION = 24
#: Bundles written before the version was recorded: constriction 0.5.0's
#: ``Categorical(perfect=False)`` re-quantises each table itself, so only that library
#: reproduces these bytes. Read for compatibility; never written by export.
LEGACY_BITSTREAM = 1
#: The bitstream written today: the tables are used exactly (``docs/bitstream.md``).
BITSTREAM_VERSION = 2
#: Every version this code reads and writes.
BITSTREAM_VERSIONS = (LEGACY_BITSTREAM, BITSTREAM_VERSION)
#: Escaped values are coded as sign + Exp-Golomb; magnitudes must stay below this.
MAX_ESCAPE_MAGNITUDE = 1 << 23
_ESCAPE_BITS_ALPHABET = 25  # bit lengths 0..24


class EntropyCodingError(ValueError):
    """A payload or symbol array that cannot be coded with the given tables."""


@dataclass(frozen=True)
class ChannelTable:
    """Static integer table of one latent channel.

    Args:
        offset: the symbol value coded by index 0; indices ``0..len(freqs)-2`` code
            ``offset..offset+len(freqs)-2``; the last index is the escape symbol.
        freqs: positive integer frequencies summing to ``2**TABLE_PRECISION``.
    """

    offset: int
    freqs: tuple[int, ...]

    @property
    def low(self) -> int:
        """Smallest value coded without escape."""
        return self.offset

    @property
    def high(self) -> int:
        """Largest value coded without escape."""
        return self.offset + len(self.freqs) - 2

    def indices(self, values: np.ndarray) -> np.ndarray:
        """Table index of each integer value; values outside ``low..high`` map to the escape."""
        values = np.asarray(values, dtype=np.int64)
        idx = values - self.offset
        idx[(values < self.low) | (values > self.high)] = len(self.freqs) - 1
        return idx

    def validate(self) -> None:
        """Raise :class:`EntropyCodingError` unless the table is well-formed."""
        f = np.asarray(self.freqs, dtype=np.int64)
        if f.ndim != 1 or len(f) < 2:
            raise EntropyCodingError("a table needs at least one symbol and the escape")
        if (f <= 0).any():
            raise EntropyCodingError("every frequency must be positive")
        if int(f.sum()) != 1 << TABLE_PRECISION:
            raise EntropyCodingError(f"frequencies sum to {int(f.sum())}, expected {1 << TABLE_PRECISION}")

    def to_json(self) -> dict:
        return {"offset": int(self.offset), "freqs": [int(v) for v in self.freqs]}

    @classmethod
    def from_json(cls, obj: dict) -> "ChannelTable":
        table = cls(offset=int(obj["offset"]), freqs=tuple(int(v) for v in obj["freqs"]))
        table.validate()
        return table


def quantise_pmf(pmf: np.ndarray, escape_mass: float = 0.0) -> tuple[int, ...]:
    """Turn a float pmf over a symbol range into integer frequencies plus escape.

    Every symbol (and the escape) keeps at least frequency 1, so any value stays
    codable; the rounding error is pushed onto the most probable symbol.

    Args:
        pmf: non-negative probabilities over the in-range symbols, shape (n,).
        escape_mass: probability reserved for the escape symbol (tail mass).
    Returns:
        ``n + 1`` positive integers summing to ``2**TABLE_PRECISION``.
    """
    total = 1 << TABLE_PRECISION
    p = np.append(np.clip(np.asarray(pmf, dtype=np.float64), 0.0, None), max(escape_mass, 0.0))
    if not np.isfinite(p).all() or p.sum() <= 0:
        raise EntropyCodingError("pmf must be finite with positive mass")
    if len(p) > total // 2:
        raise EntropyCodingError(f"alphabet of {len(p)} symbols is too large for the precision")
    p = p / p.sum()
    freqs = np.maximum(1, np.floor(p * total)).astype(np.int64)
    excess = int(freqs.sum()) - total
    # Move the rounding error onto the largest entries, never below 1.
    order = np.argsort(-freqs)
    i = 0
    while excess != 0:
        j = order[i % len(order)]
        if excess > 0:
            take = min(excess, int(freqs[j]) - 1)
            freqs[j] -= take
            excess -= take
        else:
            freqs[j] -= excess
            excess = 0
        i += 1
    return tuple(int(v) for v in freqs)


def _categorical(freqs: Sequence[int], bitstream: int):
    """constriction model of one table for ``bitstream``.

    constriction's ``perfect=False`` quantiser gives symbol ``k`` of ``K`` the 24-bit
    cumulative ``k + floor(P_k * (2**24 - K) / sum(p))``, ``P_k`` the sum of the
    probabilities before ``k`` (docs/bitstream.md). Version 1 passes the frequencies, so the
    coder re-quantises them. Version 2 passes ``(f << 8) - 1``: the scale is then exactly 1
    and every cumulative is exactly ``F_k << 8`` (integers below 2**24 are exact in float64),
    so the coder uses the table itself, in O(K). tests/test_bitstream.py reads the weights
    back out of the coder and compares bytes with an independent implementation.
    """
    f = np.asarray(freqs, dtype=np.float64)
    if bitstream != LEGACY_BITSTREAM:
        f = f * (1 << (CODER_PRECISION - TABLE_PRECISION)) - 1.0
    return constriction.stream.model.Categorical(f, perfect=False)


def dequantise(symbols: np.ndarray, gain: np.ndarray | None = None, batch_axes: int = 0) -> np.ndarray:
    """Decoder-side latents (M, *L) of one source's symbols: float32 ``symbols / gain`` per channel.

    The division training does (``y_hat = round(y · gain) / gain``), by the float32 gains a
    variable-rate bundle records; ``gain`` None (a fixed-rate source): the symbols themselves.
    ``batch_axes``: leading axes before the channel axis (e.g. 1 for (K, M, *L), K windows at once).
    """
    y = np.asarray(symbols, dtype=np.float32)
    if gain is None:
        return y
    return y / np.asarray(gain, dtype=np.float32).reshape(-1, *([1] * (y.ndim - 1 - batch_axes)))


class LatentCoder:
    """Encode/decode one source's integer latents of shape (M channels, L positions).

    Args:
        tables: one table per latent channel.
        bitstream: payload format version (the bundle's; see ``docs/bitstream.md``).
    """

    def __init__(self, tables: Sequence[ChannelTable], bitstream: int = BITSTREAM_VERSION):
        if not tables:
            raise EntropyCodingError("no channel tables")
        if bitstream not in BITSTREAM_VERSIONS:
            raise EntropyCodingError(f"unknown bitstream version {bitstream!r} (known: {BITSTREAM_VERSIONS})")
        for t in tables:
            t.validate()
        self.tables = list(tables)
        self.bitstream = bitstream
        self._models = [_categorical(t.freqs, bitstream) for t in self.tables]
        # per channel: the value of index 0 and the escape's index (decode works on whole arrays)
        self._offsets = np.array([t.offset for t in self.tables], dtype=np.int64)
        self._escapes = np.array([len(t.freqs) - 1 for t in self.tables], dtype=np.int32)
        # per symbol length: the two rows above repeated over (channel, position), row-major
        self._flat: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._escape_sign = constriction.stream.model.Uniform(2)
        self._escape_bits = constriction.stream.model.Uniform(_ESCAPE_BITS_ALPHABET)
        # the uniform model of an escape's remaining bits, by bit length (1 << (nbits - 1) values)
        self._escape_rest = [None, None] + [
            constriction.stream.model.Uniform(1 << (n - 1)) for n in range(2, _ESCAPE_BITS_ALPHABET)
        ]

    @property
    def channels(self) -> int:
        return len(self.tables)

    def encode(self, symbols: np.ndarray) -> bytes:
        """Entropy-code ``symbols`` (M, L) of integers into bytes."""
        symbols = np.asarray(symbols)
        if symbols.ndim != 2 or symbols.shape[0] != self.channels:
            raise EntropyCodingError(f"expected symbols of shape ({self.channels}, L), got {symbols.shape}")
        if not np.issubdtype(symbols.dtype, np.integer):
            raise EntropyCodingError(f"symbols must be integers, got {symbols.dtype}")
        symbols = symbols.astype(np.int64)
        indices = []
        escapes: list[int] = []  # signed overflow beyond the table edge, row-major
        for c, t in enumerate(self.tables):
            row = symbols[c]
            idx = t.indices(row)
            esc = idx == len(t.freqs) - 1
            for v in row[esc]:
                escapes.append(int(v - t.low) if v < t.low else int(v - t.high))
            indices.append(idx.astype(np.int32))

        ans = constriction.stream.stack.AnsCoder()
        # ANS is a stack: push in reverse of decode order (channels first, then escapes).
        for value in reversed(escapes):
            self._push_escape(ans, value)
        for c in reversed(range(self.channels)):
            ans.encode_reverse(indices[c], self._models[c])
        words = ans.get_compressed().astype("<u4")
        return words.tobytes().rstrip(b"\x00")

    def decode(self, payload: bytes, length: int) -> np.ndarray:
        """Decode ``payload`` back into integer symbols of shape (M, ``length``)."""
        if length < 0:
            raise EntropyCodingError("negative length")
        if payload[-1:] == b"\x00":  # encoders trim zero bytes, so this is not a payload
            raise EntropyCodingError("payload ends in a zero byte")
        flat = self._flat.get(length)
        if flat is None:
            if len(self._flat) >= 64:  # whole frames of many sizes: bounded
                self._flat.clear()
            flat = self._flat[length] = (np.repeat(self._escapes, length), np.repeat(self._offsets, length))
        escape_index, offset = flat
        padded = payload + b"\x00" * (-len(payload) % 4)
        try:
            # a view of the words, no copy (the coder copies what it reads)
            words = np.frombuffer(padded, dtype="<u4")
            if _BIG_ENDIAN:  # the coder takes native words
                words = words.astype(np.uint32)
            ans = _AnsCoder(words) if padded else _AnsCoder()
            # one decoder call per channel, then whole-array steps over every channel at once: this
            # runs once per frame on the decoder's event loop, where each numpy call costs 1-4 µs
            indices = np.concatenate([ans.decode(model, length) for model in self._models])
            out = indices + offset  # int64: the value of each index
            escaped = indices == escape_index
            if escaped.any():  # rare: escapes follow every channel's symbols, row-major (channel, position)
                for k in np.flatnonzero(escaped):
                    delta = self._pop_escape(ans)
                    table = self.tables[k // length]
                    out[k] = table.low + delta if delta < 0 else table.high + delta
        except EntropyCodingError:
            raise
        except Exception as exc:  # constriction raises plain errors on corrupt input
            raise EntropyCodingError(f"payload does not decode: {exc}") from exc
        if not ans.is_empty():
            raise EntropyCodingError("payload has trailing data after the expected symbols")
        return out.reshape(self.channels, length)

    def decode_latent(self, payload: bytes, latent_shape: Sequence[int]) -> np.ndarray:
        """Decode one source's ``payload`` into its symbols of ``latent_shape`` (M, *L)."""
        return self.decode(payload, int(np.prod(latent_shape[1:]))).reshape(tuple(latent_shape))

    def _push_escape(self, ans, delta: int) -> None:
        magnitude = abs(delta)
        if magnitude >= MAX_ESCAPE_MAGNITUDE:
            raise EntropyCodingError(f"latent value overflows the table by {delta}")
        nbits = magnitude.bit_length()  # >= 1 since magnitude >= 1
        rest = magnitude - (1 << (nbits - 1))
        if nbits > 1:
            ans.encode_reverse(np.array([rest], dtype=np.int32), constriction.stream.model.Uniform(1 << (nbits - 1)))
        ans.encode_reverse(np.array([nbits], dtype=np.int32), self._escape_bits)
        ans.encode_reverse(np.array([1 if delta > 0 else 0], dtype=np.int32), self._escape_sign)

    def _pop_escape(self, ans) -> int:
        positive = int(ans.decode(self._escape_sign, 1)[0]) == 1
        nbits = int(ans.decode(self._escape_bits, 1)[0])
        if nbits < 1:
            raise EntropyCodingError("corrupt escape code")
        rest = int(ans.decode(self._escape_rest[nbits], 1)[0]) if nbits > 1 else 0
        magnitude = (1 << (nbits - 1)) + rest
        return magnitude if positive else -magnitude
