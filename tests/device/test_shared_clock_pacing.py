"""Real-time pacing on a shared wall clock (``ndsc.sources.base.paced``, ``ndsc edge --start-at``).

Window k of a stream is due at ``epoch + (k+1)·period`` on every node given the same epoch, is
released then and stamped with that due time, so nodes started at different times release (and
stamp) each window together; a node that starts after some windows fell due skips them (counted)
and joins at the current window index.
"""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from ndsc.sources.base import Window, paced, shared_epoch

PERIOD = 0.1


class ManualClock:
    """A wall clock that moves only when slept on or advanced: pacing runs at once, and exactly.

    Every node in these tests reads its own clock; the wall clocks of machines synchronised
    by NTP agree, which is what ``paced`` relies on, so the nodes' clocks here agree too.
    """

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "paced never sleeps for nothing"
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def stream(first: int, n: int):
    """Windows ``first .. first+n-1`` of a replay (a source stamps nothing: t_capture 0)."""
    for k in range(first, first + n):
        yield Window(k, np.full((1, 4), k, dtype=np.float32), 0.0)


def consume(gen, clock, out: list) -> None:
    for w in gen:
        out.append((w.index, w.t_capture, clock.time()))


def test_two_nodes_started_apart_release_each_window_together_stamped_with_its_due_time():
    epoch = 1_700_000_000.0
    first = 1350  # a replay that starts mid-record: due times count from the stream's first window
    a, b, skipped = [], [], []
    clock_a, clock_b = ManualClock(epoch - 0.05), ManualClock(epoch + 0.25)  # b starts 0.3 s after a
    consume(paced(stream(first, 8), PERIOD, True, epoch, clock=clock_a), clock_a, a)
    consume(paced(stream(first, 8), PERIOD, True, epoch, skipped.append, clock=clock_b), clock_b, b)
    assert [i for i, _, _ in a] == list(range(first, first + 8))
    # b skipped exactly the windows due before it started (due at +0.1, +0.2) and joined at the current index
    assert [w.index for w in skipped] == [first, first + 1]
    assert [i for i, _, _ in b] == list(range(first + 2, first + 8))
    released_a = {i: (t_capture, t) for i, t_capture, t in a}
    for i, t_capture, t in b:
        due = epoch + (i - first + 1) * PERIOD
        assert t_capture == released_a[i][0] == due  # the same stamp on both nodes: the due time
        assert t == pytest.approx(due, abs=1e-9) and released_a[i][1] == pytest.approx(due, abs=1e-9)


def test_default_epoch_is_the_wall_clock_rounded_down_to_the_period():
    assert shared_epoch(0.5, 1000.3) == 1000.0
    assert shared_epoch(0.5, 1000.0) == 1000.0
    # processes started within one period agree on the epoch without being told
    assert shared_epoch(1.024, 1_700_000_000.1) == shared_epoch(1.024, 1_700_000_000.9)
    started = 1_700_000_000.537
    clock = ManualClock(started)
    out, skipped = [], []
    consume(paced(stream(0, 3), PERIOD, True, on_skip=skipped.append, clock=clock), clock, out)
    assert not skipped  # the default epoch is never in the past by a whole period: nothing is skipped
    epoch = shared_epoch(PERIOD, started)
    assert started - PERIOD < epoch <= started
    assert [t for _, t, _ in out] == [epoch + (k + 1) * PERIOD for k in range(3)]


def test_a_window_read_late_while_running_is_released_at_once_with_its_due_time():
    epoch = 1_700_000_000.0
    clock = ManualClock(epoch)
    gen = paced(stream(0, 4), PERIOD, True, epoch, on_skip=lambda w: pytest.fail(f"skipped {w.index}"), clock=clock)
    assert next(gen).index == 0
    clock.advance(2.5 * PERIOD)  # the consumer stalls: windows 1 and 2 fall due meanwhile
    t0 = clock.time()
    late = [next(gen), next(gen)]
    assert clock.time() == t0  # caught up at once, not paced again
    assert [(w.index, w.t_capture) for w in late] == [(1, epoch + 2 * PERIOD), (2, epoch + 3 * PERIOD)]


def test_without_real_time_windows_pass_at_once_stamped_with_the_wall_clock():
    clock = ManualClock(1_700_000_000.0)
    out = []
    consume(paced(stream(0, 5), PERIOD, False, epoch=clock.time() + 100, clock=clock), clock, out)
    assert [i for i, _, _ in out] == list(range(5))
    assert all(t_capture == 1_700_000_000.0 for _, t_capture, _ in out)


def test_the_default_clock_is_the_machines_wall_clock():
    before = time.time()
    (w,) = paced(stream(0, 1), PERIOD, True, epoch=before - PERIOD / 2)
    assert before <= time.time() and w.t_capture == pytest.approx(before + PERIOD / 2)
    assert time.time() >= w.t_capture  # released no earlier than due on the real clock


def test_start_at_is_a_flag_and_an_environment_setting():
    from edge_encoder.cli import configure
    from edge_encoder.settings import EdgeSettings
    from ndsc.wire.settings import from_args
    import argparse

    parser = argparse.ArgumentParser()
    configure(parser.add_subparsers())
    args = parser.parse_args(["edge", "--bundle", "b", "--start-at", "1700000000.25"])
    assert from_args(EdgeSettings, args, environ={}).start_at == 1700000000.25
    assert from_args(EdgeSettings, None, environ={"NDSC_START_AT": "12.5"}).start_at == 12.5
    assert from_args(EdgeSettings, None, environ={}).start_at is None


def test_edge_nodes_started_apart_stamp_each_window_alike_and_a_late_node_joins_in_step():
    from ndsc.bundle import load_bundle
    from ndsc.bundles import default_bundle
    from tests.serving.conftest import Subscription, edge_node, running_decoder

    bundle = default_bundle("ecg-synth-quick")  # shipped: 4 sources of 3 synthetic leads; two nodes run here
    samples = load_bundle(bundle).sources[0].input_shape[-1]
    period, n = 0.05, 16
    spec = f"ecg-synth:fs={samples / period},seed=0,start=500,count={n}"  # 50 ms per window

    async def scenario():
        async with running_decoder(bundle, deadline=2.0) as (server, address, registry):
            sub = Subscription(address, include_samples=False)
            await sub.wait_started(registry)
            start_at = time.time() + 1.0  # room for node 0 to connect on a loaded machine: it must skip nothing
            nodes = [edge_node(bundle, i, address, source=spec, fast=False, start_at=start_at) for i in range(2)]
            first = asyncio.create_task(nodes[0].run())
            while nodes[0].windows_read < 4:  # node 1 starts after windows 0-3 fell due (node 0 released them)
                await asyncio.sleep(0.005)
            await asyncio.gather(first, nodes[1].run())
        return await sub.finish(), nodes, start_at

    items, nodes, start_at = asyncio.run(scenario())
    late = nodes[1]
    skipped = late.skipped_before_start
    assert skipped >= 3
    assert late.metrics.skipped("before_start")._value.get() == skipped
    assert nodes[0].skipped_before_start == 0
    by_window = {r.window: r for r in items}
    assert len(items) == n and sorted(by_window) == list(range(500, 500 + n))  # each window decoded once
    for w, r in by_window.items():
        due_us = round((start_at + (w - 500 + 1) * period) * 1e6)
        both = w >= 500 + skipped
        assert list(r.present) == [True, both, False, False]  # windows node 1 skipped: estimated
        assert round(r.capture_time[0] * 1e6) == due_us
        if both:  # the same capture stamp from both node processes: no start-up skew
            assert round(r.capture_time[1] * 1e6) == due_us
