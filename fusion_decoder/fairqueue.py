"""Work shared by sensor groups, served in turn: one group's backlog never delays another's.

The decode pipeline's queue used to be one FIFO: a group that released windows faster than the
decoder decodes them (a hostile client, or a camera group sending whole frames of seconds each)
filled it, and every other group's windows waited behind its backlog and for room to be queued.
:class:`FairQueue` keeps a FIFO per group and hands items out round-robin across the groups that
have any, so each group's order is kept and a window of a calm group waits for at most one item
of each other group, whatever their backlogs.

Room is shared fairly too: ``put`` always succeeds below ``capacity`` items in total; at or past
it, a group waits only while it holds at least its share (``capacity`` / groups queued). So the
total stays below 2 × ``capacity``, and a flooding group's puts wait while a newcomer's go in at
once.

The interface is the part of :class:`asyncio.Queue` the pipeline uses (``put``, ``get``,
``get_nowait``, ``empty``, ``qsize``, ``task_done``, ``join``); single-threaded (event loop) use.
:class:`FairExecutor` does the same for calls run in a worker thread (the binning stage's belief
propagation).
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Generic, Hashable, TypeVar

T = TypeVar("T")


class _InTurn(Generic[T]):
    """FIFOs per key, taken from in turn across the keys that have items: the order both
    :class:`FairQueue` and :class:`FairExecutor` serve (not thread-safe; their callers lock)."""

    def __init__(self) -> None:
        self._items: dict[Hashable, deque[T]] = {}
        self._turns: deque[Hashable] = deque()  # keys with items, the next to serve first
        self.size = 0

    @property
    def keys(self) -> int:
        """Keys with items."""
        return len(self._items)

    def queued(self, key: Hashable) -> int:
        """Items of ``key``."""
        return len(self._items.get(key, ()))

    def push(self, key: Hashable, item: T) -> None:
        items = self._items.get(key)
        if items is None:
            items = self._items[key] = deque()
            self._turns.append(key)
        items.append(item)
        self.size += 1

    def pop(self) -> T:
        """The oldest item of the key whose turn it is (there must be one)."""
        key = self._turns[0]
        items = self._items[key]
        item = items.popleft()
        if items:
            self._turns.rotate(-1)  # its next item waits for every other key's turn
        else:
            del self._items[key]
            self._turns.popleft()
        self.size -= 1
        return item


class FairQueue(Generic[T]):
    """Items queued per ``key(item)`` and taken round-robin across keys (see the module doc).

    Args:
        key: an item's group.
        capacity: items queued in total before a group holding its share or more waits to put.
    """

    def __init__(self, key: Callable[[T], Hashable], capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._key = key
        self.capacity = capacity
        self._queued: _InTurn[T] = _InTurn()
        self._unfinished = 0
        self._nonempty = asyncio.Event()
        self._finished = asyncio.Event()
        self._finished.set()
        self._putters: list[asyncio.Future] = []  # puts waiting for room; they re-check when woken

    def qsize(self) -> int:
        return self._queued.size

    def empty(self) -> bool:
        return self._queued.size == 0

    def _must_wait(self, key: Hashable) -> bool:
        if self._queued.size < self.capacity:
            return False
        queued = self._queued.queued(key)
        share = self.capacity // max(1, self._queued.keys + (queued == 0))
        return queued >= share

    async def put(self, item: T) -> None:
        """Queue ``item``, first waiting while its group holds its share of a full queue."""
        key = self._key(item)
        while self._must_wait(key):
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:  # cancelled while waiting: leave no waiter behind
                waiter.cancel()
                if waiter in self._putters:
                    self._putters.remove(waiter)
                raise
        self._queued.push(key, item)
        self._unfinished += 1
        self._finished.clear()
        self._nonempty.set()

    def get_nowait(self) -> T:
        """The next item: the oldest of the group whose turn it is. Raises asyncio.QueueEmpty."""
        if not self._queued.size:
            raise asyncio.QueueEmpty
        item = self._queued.pop()
        if not self._queued.size:
            self._nonempty.clear()
        if self._putters:
            putters, self._putters = self._putters, []
            for waiter in putters:
                if not waiter.done():
                    waiter.set_result(None)
        return item

    async def get(self) -> T:
        """The next item, waiting for one."""
        while not self._queued.size:
            await self._nonempty.wait()
        return self.get_nowait()

    def task_done(self) -> None:
        """One item taken before is done with (for :meth:`join`)."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished:
            self._finished.set()

    async def join(self) -> None:
        """Until every item put has been taken and marked done."""
        await self._finished.wait()


class FairExecutor:
    """One worker thread that runs submitted calls in turn across keys (sensor groups), each key's
    calls in order: the belief-propagation threads of the binning stage. A group with a hundred
    windows waiting for BP (~0.1 s each) delays another group's next window by one call, not by its
    whole backlog (:class:`concurrent.futures.ThreadPoolExecutor` runs its calls first come, first
    served).

    Args:
        thread_name: the worker thread's name.
    """

    def __init__(self, thread_name: str):
        self._calls: _InTurn[tuple[Callable[..., Any], tuple, Future]] = _InTurn()
        self._ready = threading.Condition()
        self._shutdown = False
        self._thread = threading.Thread(target=self._work, name=thread_name, daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` in the worker thread when it is ``key``'s turn; its future."""
        future: Future = Future()
        with self._ready:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            self._calls.push(key, (fn, args, future))
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._calls.size and not self._shutdown:
                    self._ready.wait()
                if not self._calls.size:  # shut down and nothing left
                    return
                fn, args, future = self._calls.pop()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the caller, as an executor does
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True) -> None:
        """Run what was submitted, then stop the thread (``wait``: until it has)."""
        with self._ready:
            self._shutdown = True
            self._ready.notify()
        if wait:
            self._thread.join()
