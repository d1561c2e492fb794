"""A stop decodes its queue within a budget: the batch in flight finishes, the rest stay in the journal
(decoded once, after the restart) or, without one, are dropped and counted."""
from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from ndsc.bundle import load_bundle
from ndsc.wire import pb
from tests.reliability.conftest import encoded_windows

#: seconds each decoded batch takes in these tests (a slow decoder: whole frames on a loaded CPU)
SLOW = 0.3


def _slow_pipeline(bundle_path, journal_dir, registry):
    from fusion_decoder.journal import Journal
    from fusion_decoder.metrics import DecoderMetrics
    from fusion_decoder.pipeline import DecodePipeline
    from fusion_decoder.runtime import JointDecoderRuntime

    runtime = JointDecoderRuntime(load_bundle(bundle_path))
    decode_batch = runtime.decode_batch

    def slow_decode_batch(*args, **kwargs):
        time.sleep(SLOW)
        return decode_batch(*args, **kwargs)

    runtime.decode_batch = slow_decode_batch
    # one window per batch: each takes SLOW seconds, as one whole frame does
    return DecodePipeline(runtime, DecoderMetrics(registry), deadline=30.0, max_batch=1, journal=Journal(journal_dir))


def _published(queue) -> list[int]:
    out = []
    while (item := queue.get_nowait()) is not None:
        out.extend(pb.Reconstruction.FromString(m).window for m in item)
    return out


async def _add_and_stop(bundle_path, windows: int, journal_dir, registry, budget: float) -> tuple[int, list[int]]:
    """Hand ``windows`` windows of every source to a slow pipeline, stop it within ``budget``; returns the
    windows it left undecoded and those it published."""
    pipeline = _slow_pipeline(bundle_path, journal_dir, registry)
    pipeline.start()
    queue = pipeline.broadcaster.add("", include_samples=False)
    for k, (_, row) in enumerate(encoded_windows(bundle_path, windows)):
        for i, p in enumerate(row):
            await pipeline.add("g", k, i, p, 0)
    left = await pipeline.drain(budget=budget)
    await pipeline.close()
    return left, _published(queue)


def test_a_stop_past_its_drain_budget_leaves_the_rest_in_the_journal_and_the_restart_decodes_each_once(
        gaussian_bundle, tmp_path):
    rows = [row for _, row in encoded_windows(gaussian_bundle, 10)]

    async def first_run():
        pipeline = _slow_pipeline(gaussian_bundle, tmp_path, CollectorRegistry())
        pipeline.start()
        queue = pipeline.broadcaster.add("", include_samples=False)
        for k, row in enumerate(rows):
            for i, p in enumerate(row):
                await _hold(pipeline, k, i, p)
        started = time.monotonic()
        left = await pipeline.drain(budget=0.5)
        stopped_after = time.monotonic() - started
        await pipeline.close()
        return left, stopped_after, _published(queue)

    left, stopped_after, first = asyncio.run(first_run())
    assert 0 < left < 10 and len(first) == 10 - left
    assert stopped_after < 0.5 + 2 * SLOW + 1.0  # the budget and the batch in flight, not the whole queue

    async def second_run():
        pipeline = _slow_pipeline(gaussian_bundle, tmp_path, CollectorRegistry())
        pipeline.start()
        queue = pipeline.broadcaster.add("", include_samples=False)
        restored = await pipeline.restore()
        left = await pipeline.drain()  # no budget: every window
        await pipeline.close()
        return restored, left, _published(queue)

    restored, left_after_restart, second = asyncio.run(second_run())
    assert restored == 2 * left and left_after_restart == 0
    assert sorted(first + second) == list(range(10))  # every window once, none lost, none twice


async def _hold(pipeline, window: int, source: int, payload: bytes) -> None:
    """What the servicer does with an accepted frame: journal it (then it may be acknowledged), hand it on."""
    from fusion_decoder.journal import SessionRow
    from ndsc.wire import FrameData, crc32

    session = SessionRow("g", f"node{source}", source, 1, window + 1, window)
    await pipeline.journal.run(pipeline.journal.record_frames, session, source,
                               [FrameData(window + 1, window, 0, crc32(payload), payload)])
    await pipeline.add("g", window, source, payload, 0)


def test_without_a_journal_a_stop_past_its_budget_counts_the_windows_it_drops(gaussian_bundle):
    registry = CollectorRegistry()
    left, published = asyncio.run(_add_and_stop(gaussian_bundle, 10, None, registry, budget=0.5))
    assert left > 0 and len(published) == 10 - left
    assert registry.get_sample_value("ndsc_window_failures_total", {"stage": "stop"}) == left


@pytest.mark.parametrize("journaled", [False, True], ids=["in memory", "journal"])
def test_a_stop_within_its_budget_decodes_every_window(gaussian_bundle, tmp_path, journaled):
    left, published = asyncio.run(_add_and_stop(gaussian_bundle, 3, tmp_path if journaled else None,
                                                CollectorRegistry(), budget=30.0))
    assert left == 0 and sorted(published) == [0, 1, 2]
