"""Group one window's frames across the N nodes of a sensor group, with a deadline.

Pure logic, no sockets and no clock of its own (``now`` is passed in), so it is tested
directly. A window is released as soon as every source has arrived, or when its
deadline (measured from its first frame) passes, or on drain; missing sources are
``None`` and the decoder estimates them from the others.

A source's payload may arrive in chunks (several frames of one window): it counts as
arrived once every chunk is there, joined in chunk order. A window released with a
source's chunks incomplete lists that source in ``incomplete`` and estimates it like a
missing one. Every source of one window must have the same frame shape; a frame of
another shape than the window already holds is refused (``shape_mismatch``). Sources of
one window may be coded at different operating points (variable-rate bundles): each
payload keeps its stream's point in ``qualities``.
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
        shapes: per source the frame shape (C, *S) its stream announced, or None.
        parts: per source the chunks received so far (chunk index → bytes; key -1: the chunk
            count), while incomplete.
        incomplete: sources released with some of their chunks missing (estimated).
        qualities: per source the operating point its payload was coded at ("" or None: the
            bundle's default / a fixed-rate bundle).
    """

    group: str
    window: int
    payloads: list[bytes | None]
    capture_us: list[int | None]
    first_arrival: float
    released: float = 0.0
    shapes: list[tuple[int, ...] | None] = field(default_factory=list)
    parts: list[dict[int, bytes] | None] = field(default_factory=list)
    incomplete: list[int] = field(default_factory=list)
    qualities: list[str | None] = field(default_factory=list)
    symbols: list = field(default_factory=list)  # per source its payload already entropy-decoded, or None

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The window's frame shape (the first source's that announced one)."""
        return next((s for s in self.shapes if s), None)

    @property
    def complete(self) -> bool:
        return None not in self.payloads

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
        self.touched = 0.0  # ``now`` of the last frame added (idle-group eviction)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def held_windows(self, source: int) -> list[int]:
        """Windows still pending here that hold (some of) ``source``'s frame."""
        return [w for w, slot in self._pending.items()
                if slot.payloads[source] is not None or (slot.parts and slot.parts[source])]

    def shape_conflict(self, window: int, source: int, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        """The frame shape ``window`` holds from another source if it differs from ``shape``, else None."""
        slot = self._pending.get(window)
        if slot is None or not shape:
            return None
        for i, other in enumerate(slot.shapes):
            if i != source and other and tuple(other) != tuple(shape):
                return tuple(other)
        return None

    def add(self, window: int, source: int, payload: bytes, capture_us: int, now: float, *, chunk: int = 0,
            chunks: int = 1, shape: tuple[int, ...] | None = None, quality: str | None = None,
            symbols=None) -> AddResult:
        """Add source ``source``'s frame of ``window`` (chunk ``chunk`` of ``chunks``, coded at operating
        point ``quality``); returns what was released.

        ``symbols``: a whole payload already entropy-decoded (carried to decoding, never redone).

        Statuses: ``late`` (window already released), ``duplicate`` (payload or chunk already
        held), ``bad_chunk`` (a chunk count other than the source's earlier chunks announced),
        ``shape_mismatch`` (another source sent another frame shape for this window: nothing
        is held), ``pending`` or ``released``.
        """
        if not 0 <= source < self.n_sources:
            raise ValueError(f"source {source} out of range 0..{self.n_sources - 1}")
        if not 0 <= chunk < chunks:
            raise ValueError(f"chunk {chunk} out of range 0..{chunks - 1}")
        self.touched = now
        if window in self._released:
            return AddResult("late")
        if shape and self.shape_conflict(window, source, shape) is not None:
            return AddResult("shape_mismatch")
        slot = self._pending.get(window)
        if slot is None:
            n = self.n_sources
            slot = AlignedWindow(self.group, window, [None] * n, [None] * n, now, shapes=[None] * n,
                                 parts=[None] * n, qualities=[None] * n, symbols=[None] * n)
            self._pending[window] = slot
        elif slot.payloads[source] is not None:
            return AddResult("duplicate")
        if chunks > 1:
            parts = slot.parts[source]
            if parts is None:
                parts = slot.parts[source] = {-1: chunks}  # key -1 keeps the announced chunk count
            elif parts[-1] != chunks:
                return AddResult("bad_chunk")
            elif chunk in parts:
                return AddResult("duplicate")
            parts[chunk] = payload
            if slot.capture_us[source] is None:
                slot.capture_us[source] = capture_us
            slot.shapes[source] = tuple(shape) if shape else None
            if len(parts) - 1 < chunks:
                return AddResult("pending")
            payload = b"".join(parts[k] for k in range(chunks))
            slot.parts[source] = None
        slot.payloads[source] = payload
        if chunks == 1:
            slot.symbols[source] = symbols
        slot.capture_us[source] = capture_us if slot.capture_us[source] is None else slot.capture_us[source]
        slot.shapes[source] = tuple(shape) if shape else None
        slot.qualities[source] = quality or None
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
        slot.incomplete = [i for i, parts in enumerate(slot.parts) if parts and slot.payloads[i] is None]
        for i in slot.incomplete:
            slot.capture_us[i] = None  # estimated, like a source that never arrived
        slot.parts = [None] * len(slot.parts)  # the partial chunks are dropped with the window
        self._released[window] = None
        while len(self._released) > self.remember:
            self._released.popitem(last=False)
        return slot
