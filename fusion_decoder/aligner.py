"""Group one window's frames across the N nodes of a sensor group, with a deadline.

Pure logic, no sockets and no clock of its own (``now`` is passed in), so it is tested
directly. A window is released as soon as every source has arrived, or when its
deadline (measured from its first frame) passes, or on drain; missing sources are
``None`` and the decoder estimates them from the others.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class AlignedWindow:
    """One window of a group, ready to decode.

    Attributes:
        group, window: which window.
        payloads: per source its payload bytes, or None if it did not arrive in time.
        capture_us: per source its capture time (µs since the epoch), or None.
        first_arrival: ``now`` when the window's first frame arrived.
    """

    group: str
    window: int
    payloads: list[bytes | None]
    capture_us: list[int | None]
    first_arrival: float
    released: float = 0.0

    @property
    def complete(self) -> bool:
        return all(p is not None for p in self.payloads)

    @property
    def missing(self) -> list[int]:
        return [i for i, p in enumerate(self.payloads) if p is None]


@dataclass
class AddResult:
    """What adding one frame did: ``status`` is ``pending``, ``released``, ``late`` or ``duplicate``."""

    status: str
    released: list[AlignedWindow] = field(default_factory=list)


class Aligner:
    """Aligner of one group of ``n_sources`` nodes.

    Args:
        group: group name (copied into released windows).
        n_sources: N.
        deadline: seconds after a window's first frame before it is released partial.
        max_pending: windows held at most; beyond it the oldest is released partial
            (bounds memory when a node is far ahead of the others).
        remember: released window indices remembered to recognise late frames.
    """

    def __init__(self, group: str, n_sources: int, deadline: float, max_pending: int = 4096,
                 remember: int = 65536):
        self.group = group
        self.n_sources = n_sources
        self.deadline = deadline
        self.max_pending = max_pending
        self.remember = remember
        self._pending: OrderedDict[int, AlignedWindow] = OrderedDict()  # by first arrival
        self._released: OrderedDict[int, None] = OrderedDict()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, window: int, source: int, payload: bytes, capture_us: int, now: float) -> AddResult:
        """Add source ``source``'s frame of ``window``; returns what was released."""
        if not 0 <= source < self.n_sources:
            raise ValueError(f"source {source} out of range 0..{self.n_sources - 1}")
        if window in self._released:
            return AddResult("late")
        slot = self._pending.get(window)
        if slot is None:
            slot = AlignedWindow(self.group, window, [None] * self.n_sources, [None] * self.n_sources, now)
            self._pending[window] = slot
        elif slot.payloads[source] is not None:
            return AddResult("duplicate")
        slot.payloads[source] = payload
        slot.capture_us[source] = capture_us
        released = []
        if slot.complete:
            released.append(self._release(window, now))
        while len(self._pending) > self.max_pending:
            released.append(self._release(next(iter(self._pending)), now))
        return AddResult("released" if released else "pending", released)

    def mark_released(self, windows) -> None:
        """Remember ``windows`` as already decoded (read back from the journal at start)."""
        for w in windows:
            self._released[w] = None
        while len(self._released) > self.remember:
            self._released.popitem(last=False)

    def expire(self, now: float) -> list[AlignedWindow]:
        """Release every window whose deadline has passed."""
        out = []
        while self._pending:
            window, slot = next(iter(self._pending.items()))
            if now - slot.first_arrival < self.deadline:
                break
            out.append(self._release(window, now))
        return out

    def drain(self, now: float) -> list[AlignedWindow]:
        """Release everything held (shutdown)."""
        return [self._release(w, now) for w in list(self._pending)]

    def _release(self, window: int, now: float) -> AlignedWindow:
        slot = self._pending.pop(window)
        slot.released = now
        self._released[window] = None
        while len(self._released) > self.remember:
            self._released.popitem(last=False)
        return slot
