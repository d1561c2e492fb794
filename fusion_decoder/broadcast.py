"""Decoded windows to Subscribe streams: one bounded queue per subscriber, drop-oldest."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from fusion_decoder.aligner import AlignedWindow
from fusion_decoder.metrics import DecoderMetrics
from ndsc.wire import MAX_MESSAGE_BYTES, pb

#: bytes of a Reconstruction message kept for everything but its samples
_REPLY_HEADROOM = 64 * 1024


#: what a subscriber takes: metadata only, samples as packed floats (field 4, old clients) or f32le bytes (field 10)
SAMPLE_FORMATS = ("none", "floats", "f32le")
# the field keys (field number << 3 | wire type 2) the samples travel under; a packed repeated
# float is, on the wire, exactly a length-delimited run of little-endian float32 values
_FIELD_KEY = {"floats": bytes([4 << 3 | 2]), "f32le": bytes([10 << 3 | 2])}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


#: a ReconstructionBatch's field 1 (windows), length-delimited
_BATCH_FIELD_KEY = bytes([1 << 3 | 2])


def pack_reconstruction_batch(messages: list[bytes], max_bytes: int) -> tuple[bytes, list[bytes]]:
    """A serialized ReconstructionBatch of the leading ``messages`` (serialized Reconstructions)
    that fit in ``max_bytes`` (at least one), and the messages left for the next batch.

    Each message is appended as it is, under the batch's field key: nothing is parsed or
    serialized again, whichever number of subscribers shares it."""
    out, size = [], 0
    for k, m in enumerate(messages):
        part = _BATCH_FIELD_KEY + _varint(len(m)) + m
        if out and size + len(part) > max_bytes:
            return b"".join(out), messages[k:]
        out.append(part)
        size += len(part)
    return b"".join(out), []


@dataclass
class Decoded:
    """One reconstructed window."""

    window: AlignedWindow
    x_hat: np.ndarray  # (N, C, *S)
    present: np.ndarray  # (N,) bool
    reconstructed_time: float

    def meta(self) -> pb.Reconstruction:
        """The window's Reconstruction without samples."""
        w = self.window
        return pb.Reconstruction(
            group=w.group, window=w.window, shape=list(self.x_hat.shape), present=[bool(p) for p in self.present],
            payload_bytes=[len(p) if p is not None else 0 for p in w.payloads],
            capture_time=[c / 1e6 if c else 0.0 for c in w.capture_us], reconstructed_time=self.reconstructed_time)

    def encode(self, fmt: str, max_samples: int | None = None) -> list[bytes]:
        """The window as serialized Reconstructions of at most ``max_samples`` samples each (same
        metadata, consecutive ``sample_offset``), so a whole image frame fits under the message limit.

        The samples are appended as raw float32 bytes under their field key: no per-element
        conversion (``.tolist()`` of one 1080p frame took 1.44 s), whichever field the
        subscriber reads, and one encoding shared by every subscriber of that format.
        """
        meta = self.meta()
        if fmt == "none":
            return [meta.SerializeToString()]
        flat = np.ascontiguousarray(self.x_hat, dtype="<f4").ravel()
        step = max(1, max_samples or flat.size)
        out = []
        for k in range(0, max(flat.size, 1), step):
            meta.sample_offset = k
            part = flat[k:k + step].tobytes()
            out.append(meta.SerializeToString() + (_FIELD_KEY[fmt] + _varint(len(part)) + part if part else b""))
        return out


class _SubscriberQueue(asyncio.Queue):
    """A subscriber's queue that also knows the bytes it holds (``_put``/``_get`` are asyncio.Queue's
    hooks, the ones its Lifo and Priority variants override). Entries: a window's serialized messages,
    or None (the end)."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self.nbytes = 0

    def _put(self, item) -> None:
        super()._put(item)
        self.nbytes += sum(map(len, item)) if item else 0

    def _get(self):
        item = super()._get()
        self.nbytes -= sum(map(len, item)) if item else 0
        return item


class Broadcaster:
    """Subscribe streams: one bounded queue each; a slow subscriber loses its oldest windows
    (counted in ``ndsc_subscriber_dropped_total``), never stalls decoding or other subscribers.
    Queue entries are serialized messages (the Subscribe serializer passes bytes through).

    Each queue holds at most ``queue_size`` windows and its share of ``max_queued_bytes`` (that
    budget split evenly between the subscribers; one window always fits), so subscribers that stop
    reading cannot hold more than the budget between them, whatever the frames' size (4 096 whole
    stereo frames with samples would be 36 GB)."""

    def __init__(self, metrics: DecoderMetrics, queue_size: int = 4096, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 max_queued_bytes: int = 512 << 20):
        self.metrics = metrics
        self.queue_size = queue_size
        self.max_message_bytes = max_message_bytes
        self.max_queued_bytes = max_queued_bytes
        # float32 samples per message, leaving room for the metadata (4 bytes each)
        self.max_samples = max(1, (max_message_bytes - _REPLY_HEADROOM) // 4)
        self._subs: list[tuple[str, str, _SubscriberQueue]] = []

    @property
    def subscribers(self) -> int:
        """Subscribe streams open."""
        return len(self._subs)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in every subscriber's queue."""
        return sum(q.nbytes for _, _, q in self._subs)

    def add(self, group: str, include_samples: bool, f32le: bool = False) -> asyncio.Queue:
        q = _SubscriberQueue(self.queue_size)
        fmt = "none" if not include_samples else "f32le" if f32le else "floats"
        self._subs.append((group, fmt, q))
        self.metrics.subscribers.set(len(self._subs))
        share = self._share()
        for _, _, other in self._subs:  # the others' shares just shrank
            self._make_room(other, 0, share)
        return q

    def remove(self, q: asyncio.Queue) -> None:
        self._subs = [s for s in self._subs if s[2] is not q]
        self.metrics.subscribers.set(len(self._subs))

    def publish(self, item: Decoded) -> None:
        # one queue entry per window (its messages): drop-oldest never tears a window apart
        cache: dict[str, list[bytes]] = {}
        share = self._share()
        for group, fmt, q in self._subs:
            if group and group != item.window.group:
                continue
            if fmt not in cache:
                cache[fmt] = item.encode(fmt, self.max_samples)
            self._make_room(q, sum(map(len, cache[fmt])), share)
            q.put_nowait(cache[fmt])

    def _share(self) -> int:
        return self.max_queued_bytes // max(1, len(self._subs))

    def _make_room(self, q: _SubscriberQueue, nbytes: int, share: int) -> None:
        """Drop-oldest until ``nbytes`` more fit: a late reader wants the newest windows."""
        while q.full() or (q.nbytes + nbytes > share and not q.empty()):
            q.get_nowait()
            self.metrics.subscriber_dropped.inc()

    def close(self) -> None:
        """End every Subscribe stream (after the last drained window)."""
        for _, _, q in self._subs:
            while True:
                try:
                    q.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    q.get_nowait()  # the end marker matters more than one old window
