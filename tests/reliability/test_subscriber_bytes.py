"""Subscribers that stop reading hold at most the broadcaster's byte budget between them, whatever
the frames' size; each keeps its newest windows."""
from __future__ import annotations

import asyncio

import numpy as np
from prometheus_client import CollectorRegistry

from fusion_decoder.aligner import AlignedWindow
from fusion_decoder.broadcast import Broadcaster, Decoded
from fusion_decoder.metrics import DecoderMetrics
from ndsc.wire import pb


def _window(k: int, samples: int = 32_000) -> Decoded:
    x = np.full((2, samples), k, np.float32)  # 256 kB of samples
    return Decoded(AlignedWindow("g", k, [b"a", b"b"], [1, 1], 0.0), x, np.array([True, True]), 1.0)


def test_subscribers_that_stop_reading_hold_at_most_the_byte_budget():
    async def run() -> None:
        registry = CollectorRegistry()
        broadcaster = Broadcaster(DecoderMetrics(registry), queue_size=4096, max_queued_bytes=4 << 20)
        queues = [broadcaster.add("g", include_samples=True, f32le=True) for _ in range(4)]
        for k in range(200):  # 51 MB published to each of 4 subscribers that never read
            broadcaster.publish(_window(k))
            assert broadcaster.queued_bytes <= 4 << 20
        dropped = registry.get_sample_value("ndsc_subscriber_dropped_total")
        assert dropped and dropped > 4 * 150  # each queue kept ~4 of the 200 windows, not 4 096
        for q in queues:  # what is left is the newest, whole
            windows = []
            while not q.empty():
                (message,) = q.get_nowait()
                windows.append(pb.Reconstruction.FromString(message).window)
            assert windows and windows[-1] == 199 and windows == list(range(200 - len(windows), 200))
        assert broadcaster.queued_bytes == 0

    asyncio.run(run())


def test_a_new_subscriber_shrinks_the_others_shares_at_once():
    async def run() -> None:
        broadcaster = Broadcaster(DecoderMetrics(CollectorRegistry()), max_queued_bytes=4 << 20)
        first = broadcaster.add("", include_samples=True, f32le=True)
        for k in range(40):
            broadcaster.publish(_window(k))
        assert first.qsize() > 8  # alone, it had the whole budget
        broadcaster.add("", include_samples=True, f32le=True)
        assert broadcaster.queued_bytes <= 2 << 20  # now half

    asyncio.run(run())
