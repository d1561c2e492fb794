"""Read an uplink stream ahead of its handler, so one Ack can answer every message already here.

gRPC's per-message work (a read, a write, each a completion handed from grpc's poller to the
event loop) costs the decoder more than checking a frame does. A handler that reads one
message, answers it, then reads the next pays one Ack write per message however far behind
it is. :class:`ReadAhead` keeps reading in a task of its own into a bounded buffer; the
handler takes everything buffered at once and answers it with one cumulative Ack. When the
decoder keeps up (one message at a time) nothing changes: each message gets its own Ack as
soon as it is held. When it falls behind, Acks coalesce and the decoder does less per frame,
which is what lets it catch up. The bounds keep gRPC's flow control in charge: past
``limit`` buffered messages or ``max_bytes`` buffered bytes the task stops reading and the
client's sends wait (so a client of 16 MiB messages gets one read ahead, not 64).

Typical use::

    inbox = ReadAhead(request_iterator, idle=60.0)
    try:
        while (messages := await inbox.take()):     # [] at the end of the stream
            ...                                       # every message, in order
    finally:
        await inbox.close()
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import AsyncIterator, Callable, Generic, TypeVar

T = TypeVar("T")


class IdleStream(Exception):
    """No message arrived for ``idle`` seconds."""


class ReadAhead(Generic[T]):
    """Messages of ``source`` read ahead by a task, at most ``limit`` buffered.

    Args:
        source: the stream's async iterator of messages.
        idle: seconds without a message after which :meth:`take` raises :class:`IdleStream`.
        limit: messages buffered at most (the task stops reading beyond it).
        max_bytes: bytes buffered at most, as ``size`` counts them (one message always fits).
        size: a message's size in bytes.
    """

    def __init__(self, source: AsyncIterator[T], idle: float, limit: int = 64, max_bytes: int = 1 << 20,
                 size: Callable[[T], int] = lambda message: 0):
        self._source = source
        self._idle = idle
        self._limit = limit
        self._max_bytes = max_bytes
        self._size = size
        self._bytes = 0  # of the buffered messages
        self._buffer: deque[T] = deque()
        self._end: BaseException | None = None  # why reading stopped: StopAsyncIteration, IdleStream, an error
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._loop = asyncio.get_running_loop()
        # idle detection: one re-arming timer per stream, not one per read (a timer per message
        # cost the event loop more than the rest of reading it)
        self._reading_since = self._loop.time()  # last message, or when reading resumed; None: not reading
        self._idle_expired = False
        self._task = self._loop.create_task(self._read())
        self._watchdog = self._loop.call_later(idle, self._check_idle)

    def _check_idle(self) -> None:
        if self._task.done():
            return
        since = self._reading_since
        now = self._loop.time()
        if since is not None and now - since >= self._idle:
            self._idle_expired = True
            self._task.cancel()
            return
        self._watchdog = self._loop.call_later(self._idle if since is None else since + self._idle - now,
                                               self._check_idle)

    async def _read(self) -> None:
        loop = self._loop
        try:
            while True:
                if len(self._buffer) >= self._limit or self._bytes >= self._max_bytes:
                    self._reading_since = None  # full: the handler is behind, the stream is not idle
                    self._room.clear()
                    await self._room.wait()
                    self._reading_since = loop.time()
                message = await self._source.__anext__()
                self._reading_since = loop.time()
                self._buffer.append(message)
                self._bytes += self._size(message)
                self._arrived.set()
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - handed to the reader in order
            idle = isinstance(exc, asyncio.CancelledError) and self._idle_expired
            self._end = IdleStream() if idle else exc
            self._arrived.set()
            if isinstance(exc, asyncio.CancelledError) and not idle:
                raise

    async def take(self, within: float | None = None) -> list[T] | None:
        """Every buffered message (at least one), in order; ``[]`` when the stream ended; None
        when ``within`` seconds passed with nothing buffered (None: wait as long as it takes).

        Raises:
            IdleStream: nothing arrived for ``idle`` seconds (after the buffered messages).
            Exception: what reading the stream raised (after the buffered messages).
        """
        if within is not None and not self._buffer and self._end is None:
            # one plain timer that wakes the wait (an asyncio.timeout per take cost the event loop
            # more than the take: this runs for every message a paced stream holds between Acks)
            timer = self._loop.call_later(within, self._arrived.set)
            try:
                self._arrived.clear()
                await self._arrived.wait()
            finally:
                timer.cancel()
            if not self._buffer and self._end is None:
                return None
        while not self._buffer and self._end is None:
            self._arrived.clear()
            await self._arrived.wait()
        if self._buffer:
            out = list(self._buffer)
            self._buffer.clear()
            self._bytes = 0
            self._room.set()
            return out
        if isinstance(self._end, (StopAsyncIteration, asyncio.CancelledError)):
            return []
        raise self._end

    async def close(self) -> None:
        """Stop reading (the handler is done with the stream)."""
        self._watchdog.cancel()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
