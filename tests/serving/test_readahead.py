"""The uplink read-ahead: everything already received at once, in order, within bounds, no sockets."""
from __future__ import annotations

import asyncio

import pytest

from fusion_decoder.readahead import IdleStream, ReadAhead


class Source:
    """An async iterator of ``items`` that counts what was pulled and can end in an error."""

    def __init__(self, items, error: Exception | None = None, gate: asyncio.Event | None = None):
        self.items, self.error, self.gate, self.pulled = list(items), error, gate, 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.gate is not None:
            await self.gate.wait()
        if self.pulled < len(self.items):
            self.pulled += 1
            return self.items[self.pulled - 1]
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration


def test_take_returns_every_message_already_here_in_order_then_the_end():
    async def scenario():
        inbox = ReadAhead(Source(range(5)), idle=5.0)
        await asyncio.sleep(0.01)  # the reader runs ahead
        try:
            return [await inbox.take(), await inbox.take()]
        finally:
            await inbox.close()

    assert asyncio.run(scenario()) == [[0, 1, 2, 3, 4], []]


def test_reading_stops_at_the_message_and_byte_bounds_until_the_handler_takes():
    async def scenario():
        by_count, by_bytes = Source(range(10)), Source([b"x" * 8] * 10)
        a = ReadAhead(by_count, idle=5.0, limit=3)
        b = ReadAhead(by_bytes, idle=5.0, max_bytes=10, size=len)
        await asyncio.sleep(0.02)
        pulled = (by_count.pulled, by_bytes.pulled)
        first = await a.take()
        await asyncio.sleep(0.02)
        after = by_count.pulled
        await a.close()
        await b.close()
        return pulled, first, after

    pulled, first, after = asyncio.run(scenario())
    assert pulled == (3, 2)  # 3 messages; 8 bytes < 10 so a second, then 16 ≥ 10: stop
    assert first == [0, 1, 2] and after == 6  # taking makes room for the next 3


def test_a_silent_stream_is_idle_after_its_buffered_messages_are_taken():
    async def scenario():
        gate = asyncio.Event()
        inbox = ReadAhead(Source([], gate=gate), idle=0.05)
        with pytest.raises(IdleStream):
            await inbox.take()
        await inbox.close()

    asyncio.run(scenario())


def test_a_read_error_comes_after_the_messages_read_before_it():
    async def scenario():
        inbox = ReadAhead(Source([1, 2], error=RuntimeError("stream broke")), idle=5.0)
        await asyncio.sleep(0.01)
        got = await inbox.take()
        with pytest.raises(RuntimeError, match="stream broke"):
            await inbox.take()
        await inbox.close()
        return got

    assert asyncio.run(scenario()) == [1, 2]



def test_a_take_within_a_time_returns_none_when_nothing_came_and_the_message_when_one_did():
    async def scenario():
        gate = asyncio.Event()
        inbox = ReadAhead(Source(["late"], gate=gate), idle=5.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        nothing = await inbox.take(within=0.05)
        waited = loop.time() - start
        loop.call_later(0.02, gate.set)
        arrived = await inbox.take(within=2.0)
        took = loop.time() - start - waited
        end = await inbox.take(within=2.0)  # the stream ended: [] at once, not None
        await inbox.close()
        return nothing, waited, arrived, took, end

    nothing, waited, arrived, took, end = asyncio.run(scenario())
    assert nothing is None and 0.04 <= waited < 1.0
    assert arrived == ["late"] and took < 1.0  # woken by the message, not by the 2 s timer
    assert end == []
