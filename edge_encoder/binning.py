"""The edge's side of a syndrome-coded source: payloads, kept windows, answers to requests.

A syndrome source (the bundle's ``coding: syndrome``) sends, per window, the initial
syndrome payload (``ndsc.binning.SyndromeSpec.initial_payload``: each syndrome plane's first
accumulated bits and, when the record has ``check_bits``, the plane's CRC, which lets the
decoder refuse a wrong word) instead of entropy-coded symbols, keeps the window's bit planes
until the decoder says it is settled (``Ack.settled_below``), and answers each ``Ack.requests`` entry with a
:class:`~ndsc.wire.pb.SyndromeBlock`: the requested accumulated-syndrome bits, or the window's
direct payload (the source's static tables) when the decoder asks for the fallback. NumPy
only: the edge never imports torch.

Typical use (``edge_encoder.node.EdgeNode`` does this)::

    coder = SyndromeResponder(info)
    payload = coder.encode(window_index, symbols)      # the frame's payload
    coder.on_ack(ack)                                  # requests → coder.replies; settled windows forgotten
    message = coder.reply_message()                    # UplinkMessage(syndrome=...) or None
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from ndsc.binning import pack_bits
from ndsc.bundle import SourceInfo
from ndsc.wire import crc32, pb


class SyndromeEdgeMetrics:
    """Counters of a syndrome source's edge (same labels as the node's other metrics)."""

    def __init__(self, registry: CollectorRegistry, group: str, node: str, source: int):
        labels = {"group": group, "node": node, "source": str(source)}
        self.bits = Counter(
            "ndsc_edge_syndrome_bits",
            "Syndrome bits sent, by kind: initial, requested, direct (fallback)",
            [*labels, "kind"],
            registry=registry,
        )
        self.requests = Counter(
            "ndsc_edge_syndrome_requests",
            "Decoder requests answered, by kind: more, direct, forgotten (the window was no longer kept)",
            [*labels, "kind"],
            registry=registry,
        )
        self._labels = labels

    def bit(self, kind: str):
        return self.bits.labels(**self._labels, kind=kind)

    def request(self, kind: str):
        return self.requests.labels(**self._labels, kind=kind)


class SyndromeResponder:
    """Syndrome payloads of one source and the windows kept for the decoder's requests.

    Args:
        info: the source (``info.binning`` set).
        keep: windows kept at most; beyond it the oldest is forgotten (a request for it then
            goes unanswered and the decoder estimates that source of the window).
        metrics: counters, or None.
    """

    def __init__(self, info: SourceInfo, keep: int = 4096, metrics: SyndromeEdgeMetrics | None = None):
        if info.binning is None:
            raise ValueError(f"source {info.name} is not syndrome-coded")
        self.spec = info.binning
        self.coder = info.coder()
        self.keep = keep
        self.metrics = metrics
        # window → its (B, n) bit planes, packed 8 to a byte (a kept window costs B·n/8 bytes)
        self._kept: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # encode runs in the producer's worker thread
        self.replies: list[pb.SyndromeBlock] = []

    def encode(self, window: int, symbols: np.ndarray) -> bytes:
        """The window's payload; its bit planes are kept until the window is settled."""
        planes = self.spec.planes_of(symbols)
        payload = self.spec.initial_payload(planes)
        with self._lock:
            self._kept[window] = np.packbits(planes, axis=1)
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)
        if self.metrics:
            self.metrics.bit("initial").inc(8 * len(payload))
        return payload

    @property
    def settled(self) -> bool:
        """No window is kept any more (the decoder needs nothing else from this node)."""
        return not self._kept

    def forget_below(self, window: int) -> None:
        """Forget every kept window below ``window`` (no request can come for them)."""
        with self._lock:
            for w in [w for w in self._kept if w < window]:
                del self._kept[w]

    def on_ack(self, ack: pb.Ack) -> None:
        """Forget settled windows; answer the Ack's requests into :attr:`replies`."""
        self.forget_below(ack.settled_below)
        for r in ack.requests:
            block = self.answer(r)
            if block is not None:
                self.replies.append(block)

    def answer(self, r: pb.SyndromeRequest) -> pb.SyndromeBlock | None:
        """The block that answers ``r``, or None for a window no longer kept or a request that
        does not fit the code (a decoder bug: nothing sensible to send)."""
        with self._lock:
            packed = self._kept.get(r.window)
        planes = None if packed is None else np.unpackbits(packed, axis=1, count=self.spec.n)
        spec = self.spec
        if planes is None or (not r.direct and not (r.plane < spec.index_bits and r.first_bit < r.end_bit <= spec.n)):
            if self.metrics:
                self.metrics.request("forgotten").inc()
            return None
        if r.direct:
            index = sum(planes[k].astype(np.int64) << k for k in range(spec.index_bits))
            bits = self.coder.encode(spec.symbols_of(index).reshape(self.coder.channels, -1))
        else:
            bits = pack_bits(spec.sent_bits(planes[r.plane], r.first_bit, r.end_bit))
        return self._reply(r, bits)

    def _reply(self, r: pb.SyndromeRequest, bits: bytes) -> pb.SyndromeBlock:
        """The block that carries ``bits`` in answer to ``r`` (echoing it), counted."""
        if self.metrics:
            self.metrics.request("direct" if r.direct else "more").inc()
            self.metrics.bit("direct" if r.direct else "requested").inc(8 * len(bits))
        return pb.SyndromeBlock(
            window=r.window,
            plane=0 if r.direct else r.plane,
            first_bit=0 if r.direct else r.first_bit,
            end_bit=0 if r.direct else r.end_bit,
            direct=r.direct,
            bits=bits,
            crc32=crc32(bits),
        )

    def reply_message(self) -> pb.UplinkMessage | None:
        """Every pending answer in one message (None when there is none)."""
        if not self.replies:
            return None
        blocks, self.replies = self.replies, []
        return pb.UplinkMessage(syndrome=pb.SyndromeReply(blocks=blocks))
