"""The decode queue serves sensor groups in turn: one group's backlog never delays another's windows
(fusion_decoder/fairqueue.py), on its own and in the real pipeline."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fusion_decoder.fairqueue import FairQueue


def test_groups_are_served_in_turn_each_in_its_own_order():
    async def scenario() -> list[str]:
        queue: FairQueue[str] = FairQueue(lambda item: item[0], capacity=64)
        for item in ("a1", "a2", "a3", "a4", "b1", "c1", "b2"):
            await queue.put(item)
        out = [await queue.get() for _ in range(queue.qsize())]
        assert queue.empty()
        with pytest.raises(asyncio.QueueEmpty):
            queue.get_nowait()
        return out

    assert asyncio.run(scenario()) == ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]


def test_a_full_queue_makes_only_the_group_holding_more_than_its_share_wait():
    async def scenario() -> tuple[bool, bool, bool, int]:
        queue: FairQueue[str] = FairQueue(lambda item: item[0], capacity=4)
        for k in range(4):
            await queue.put(f"a{k}")
        flooding = asyncio.ensure_future(queue.put("a4"))
        await asyncio.sleep(0.01)
        waited = not flooding.done()
        await asyncio.wait_for(queue.put("b0"), 1)  # a newcomer goes in at once: below its share
        still_waiting = not flooding.done()
        queue.get_nowait()  # a0: the flooder now holds 3 of 5, still past its share (4 // 2)
        await asyncio.sleep(0.01)
        after_one = flooding.done()
        queue.get_nowait()  # b0
        queue.get_nowait()  # a1: 2 left, below capacity
        await asyncio.wait_for(flooding, 1)
        return waited, still_waiting, after_one, queue.qsize()

    waited, still_waiting, after_one, left = asyncio.run(scenario())
    assert waited and still_waiting and not after_one and left == 3


def test_join_waits_for_every_item_to_be_done_and_a_cancelled_put_leaves_nothing_behind():
    async def scenario() -> tuple[bool, bool, int]:
        queue: FairQueue[str] = FairQueue(lambda item: item[0], capacity=1)
        await queue.put("a0")
        blocked = asyncio.ensure_future(queue.put("a1"))
        await asyncio.sleep(0.01)
        blocked.cancel()
        await asyncio.gather(blocked, return_exceptions=True)
        joined = asyncio.ensure_future(queue.join())
        queue.get_nowait()
        await asyncio.sleep(0.01)
        early = joined.done()
        queue.task_done()
        await asyncio.wait_for(joined, 1)
        return early, blocked.cancelled(), queue.qsize()

    early, cancelled, left = asyncio.run(scenario())
    assert not early and cancelled and left == 0


def test_a_calm_groups_windows_are_decoded_in_the_first_batch_behind_another_groups_backlog():
    """20 windows of a flooding group are queued before 2 of a calm one: with batches of 4 the calm
    group's windows go in the first batch (before: the sixth, behind the whole backlog)."""
    from fusion_decoder.metrics import DecoderMetrics
    from fusion_decoder.pipeline import DecodePipeline
    from fusion_decoder.runtime import JointDecoderRuntime
    from ndsc.bundle import load_bundle
    from ndsc.bundles import default_bundle

    runtime = JointDecoderRuntime(load_bundle(default_bundle("ecg-synth-quick")), device="cpu")
    shape = runtime.latent_shape(0)

    class Watched(DecodePipeline):
        batches: list[list[tuple[str, int]]] = []

        def _publish(self, batch, x_hat, present):
            self.batches.append([(w.group, w.window) for w in batch])
            super()._publish(batch, x_hat, present)

    async def scenario():
        pipeline = Watched(runtime, DecoderMetrics(CollectorRegistry()), deadline=5.0, max_batch=4)
        for group, count in (("flood", 20), ("calm", 2)):
            for window in range(count):
                for source in range(runtime.n_sources):
                    held = pipeline.hold(group, window, source, b"", 1, symbols=np.zeros(shape, np.int64))
                    await pipeline.release(held.released)
        pipeline.start()  # the backlog is queued before the first batch is taken
        await asyncio.wait_for(pipeline._queue.join(), 60)
        await pipeline.close()
        return pipeline.batches

    batches = asyncio.run(scenario())
    assert batches[0] == [("flood", 0), ("calm", 0), ("flood", 1), ("calm", 1)]
    assert [w for b in batches for w in b if w[0] == "flood"] == [("flood", k) for k in range(20)]  # in order


def test_the_fair_executor_runs_groups_calls_in_turn_each_in_order_and_hands_back_errors():
    """The binning stage's BP thread: a group with a backlog of calls delays another group's call by
    one call, not by the backlog."""
    import threading

    from fusion_decoder.fairqueue import FairExecutor

    order: list[str] = []
    started, gate = threading.Event(), threading.Event()

    def first() -> str:
        started.set()
        gate.wait(10)
        order.append("a0")
        return "done"

    def fails() -> None:
        raise ValueError("a bad payload")

    executor = FairExecutor("test-fair")
    futures = [executor.submit("a", first)]
    assert started.wait(10)  # a0 runs: everything below queues behind it
    futures += [executor.submit("a", order.append, f"a{k}") for k in range(1, 5)]
    futures += [executor.submit("b", order.append, "b0"), executor.submit("b", fails),
                executor.submit("b", order.append, "b1")]
    gate.set()
    executor.shutdown(wait=True)  # runs what was submitted first
    assert order == ["a0", "a1", "b0", "a2", "a3", "b1", "a4"]  # b's failing call took its turn between
    assert futures[0].result() == "done"
    with pytest.raises(ValueError, match="a bad payload"):
        futures[6].result()
    with pytest.raises(RuntimeError):
        executor.submit("a", order.append, "late")
