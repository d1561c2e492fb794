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


@dataclass
class Decoded:
    """One reconstructed window."""

    window: AlignedWindow
    x_hat: np.ndarray  # (N, C, *S)
    present: np.ndarray  # (N,) bool
    reconstructed_time: float

    def message(self, include_samples: bool) -> pb.Reconstruction:
        """The whole window in one message (see :meth:`messages` for the size-limited form)."""
        return self.messages(include_samples)[0]

    def messages(self, include_samples: bool, max_samples: int | None = None) -> list[pb.Reconstruction]:
        """The window as Reconstructions of at most ``max_samples`` samples each (same metadata,
        consecutive ``sample_offset``), so a whole image frame fits under the message limit."""
        w = self.window
        meta = dict(group=w.group, window=w.window, shape=list(self.x_hat.shape),
                    present=[bool(p) for p in self.present],
                    payload_bytes=[len(p) if p is not None else 0 for p in w.payloads],
                    capture_time=[c / 1e6 if c is not None else 0.0 for c in w.capture_us],
                    reconstructed_time=self.reconstructed_time)
        if not include_samples:
            return [pb.Reconstruction(**meta)]
        flat = self.x_hat.ravel()
        step = max(1, max_samples or flat.size)
        return [pb.Reconstruction(**meta, samples=flat[k:k + step].tolist(), sample_offset=k)
                for k in range(0, max(flat.size, 1), step)]


class Broadcaster:
    """Subscribe streams: one bounded queue each; a slow subscriber loses its oldest windows
    (counted in ``ndsc_subscriber_dropped_total``), never stalls decoding or other subscribers."""

    def __init__(self, metrics: DecoderMetrics, queue_size: int = 4096, max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.metrics = metrics
        self.queue_size = queue_size
        # float32 samples per message, leaving room for the metadata (packed floats: 4 bytes each)
        self.max_samples = max(1, (max_message_bytes - _REPLY_HEADROOM) // 4)
        self._subs: list[tuple[str, bool, asyncio.Queue]] = []

    def add(self, group: str, include_samples: bool) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self._subs.append((group, include_samples, q))
        self.metrics.subscribers.set(len(self._subs))
        return q

    def remove(self, q: asyncio.Queue) -> None:
        self._subs = [s for s in self._subs if s[2] is not q]
        self.metrics.subscribers.set(len(self._subs))

    def publish(self, item: Decoded) -> None:
        # one queue entry per window (its messages): drop-oldest never tears a window apart
        cache: dict[bool, list[pb.Reconstruction]] = {}
        for group, include, q in self._subs:
            if group and group != item.window.group:
                continue
            if include not in cache:
                cache[include] = item.messages(include, self.max_samples)
            if q.full():
                q.get_nowait()  # drop-oldest: a late reader wants the newest windows
                self.metrics.subscriber_dropped.inc()
            q.put_nowait(cache[include])

    def close(self) -> None:
        """End every Subscribe stream (after the last drained window)."""
        for _, _, q in self._subs:
            while True:
                try:
                    q.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    q.get_nowait()  # the end marker matters more than one old window
