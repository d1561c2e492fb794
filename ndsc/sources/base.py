"""The source abstraction every edge node reads from, and the scheme registry.

A source spec is ``scheme:arguments`` (``gaussian:rho=0.9,n=2``, ``ecg-synth:seed=3``,
later ``wfdb:PATH#leads=I,II`` …). Readers register their scheme with
:func:`register_source`; the edge node only calls :func:`open_source`, so adding a
reader never touches the node.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from ndsc.registry import Registry


class SourceError(ValueError):
    """A source spec that cannot be opened, or input that is not a valid window."""


@dataclass(frozen=True)
class Window:
    """One fixed-size window of one source.

    Attributes:
        index: window number within the stream (0, 1, …); all nodes of a group agree on it.
        data: float32 array (channels, samples) or (channels, H, W), physical units.
        t_capture: wall-clock time (seconds since the epoch) the last sample was captured.
    """

    index: int
    data: np.ndarray
    t_capture: float


@runtime_checkable
class WindowSource(Protocol):
    """An iterator of fixed-size windows with a real-time pace."""

    #: names of the channels of each window (``("I", "II")``, ``("s0",)``, ``("R","G","B")``)
    channel_names: tuple[str, ...]
    #: seconds between consecutive windows at the source's real-time pace
    window_period: float

    def windows(self) -> Iterator[Window]:
        """Yield windows in order; ends when the source ends."""
        ...


SourceFactory = Callable[..., WindowSource]
#: ``factory(arguments, source_index, input_shape)`` per scheme; readers with optional deps register lazily
SOURCES: Registry[SourceFactory] = Registry(
    "source scheme", "ndsc.sources.synthetic", "ndsc.sources.ecg", "ndsc.sources.images", "ndsc.sources.stream"
)


def register_source(scheme: str) -> Callable[[SourceFactory], SourceFactory]:
    """Register ``factory(arguments, source_index, input_shape)`` for ``scheme:``."""
    return SOURCES.register(scheme)


def registered_schemes() -> list[str]:
    return SOURCES.names()


def open_source(
    spec: str, source_index: int, input_shape: tuple[int, ...], frame_stride: int | None = None
) -> WindowSource:
    """Open the window source named by ``spec`` for source ``source_index``.

    Args:
        spec: ``scheme:arguments``.
        source_index: which of the bundle's sources this node is.
        input_shape: the window shape the node's encoder expects (from the bundle).
        frame_stride: the bundle's ``frame_stride`` (a fully convolutional image encoder):
            passed to factories that accept it, so image sources yield whole frames of any
            size rather than tiles of ``input_shape``; others ignore it.
    Raises:
        SourceError: unknown scheme or bad arguments.
    """
    scheme, _, args = spec.partition(":")
    if scheme not in SOURCES:
        raise SourceError(f"unknown source scheme {scheme!r} in {spec!r}; known: {', '.join(SOURCES.names())}")
    factory = SOURCES.get(scheme)
    if frame_stride and "frame_stride" in inspect.signature(factory).parameters:
        return factory(args, source_index, tuple(input_shape), frame_stride=frame_stride)
    return factory(args, source_index, tuple(input_shape))


def parse_kv(args: str) -> dict[str, str]:
    """Parse ``a=1,b=x`` into a dict (empty string gives an empty dict)."""
    out: dict[str, str] = {}
    for part in filter(None, args.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise SourceError(f"expected key=value, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def shared_epoch(period: float, now: float | None = None) -> float:
    """The default pacing epoch: the wall clock rounded down to a multiple of ``period``.

    Nodes started independently (compose, k8s) agree on it without being told, as long as
    they start within the same period; in any case their releases fall on the same phase
    of the wall clock. A group that must agree on window indices whatever their start times
    passes one explicit epoch to every node (``ndsc edge --start-at``; the demo does).
    """
    now = time.time() if now is None else now
    return math.floor(now / period) * period


class Clock(Protocol):
    """A wall clock: seconds since the Unix epoch, and a way to wait (injected so tests need not sleep)."""

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The machine's wall clock (:func:`time.time`, :func:`time.sleep`)."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


WALL_CLOCK = WallClock()


def paced(
    windows: Iterator[Window],
    period: float,
    realtime: bool,
    epoch: float | None = None,
    on_skip: Callable[[Window], None] | None = None,
    clock: Clock = WALL_CLOCK,
) -> Iterator[Window]:
    """Re-yield ``windows`` at the source's real-time pace on a wall clock the nodes share.

    With ``realtime`` the stream's window of index ``first + k`` (``first``: the index of its
    first window) is due at ``epoch + (k + 1) · period`` (wall clock, seconds since the Unix
    epoch), is released then, and carries that due time as ``t_capture`` (when its last
    sample was captured), so every node given the same epoch releases window k at the same
    instant and capture→reconstruction latency holds no start-up skew between nodes.
    ``epoch`` defaults to :func:`shared_epoch` at the first read. A window due before the
    pacing started (a node that joins after the shared epoch) is skipped and passed to
    ``on_skip``: its capture ended before the node existed, and skipping it makes the node
    join at the current window index, in step with the others. A window that falls due
    while the node is running but is read late is released at once, keeping its due time.
    Without ``realtime`` (or a period ≤ 0) windows pass at once, stamped with the wall clock.
    ``clock``: the wall clock read and slept on.
    """
    if not realtime or period <= 0:
        for w in windows:
            yield Window(w.index, w.data, clock.time())
        return
    started = clock.time()
    epoch = shared_epoch(period, started) if epoch is None else float(epoch)
    first = None
    for w in windows:
        first = w.index if first is None else first
        due = epoch + (w.index - first + 1) * period
        if due < started:
            if on_skip is not None:
                on_skip(w)
            continue
        # The wall clock is the shared reference: sleep until it reads ``due``.
        delay = due - clock.time()
        if delay > 0:
            clock.sleep(delay)
        yield Window(w.index, w.data, due)


def is_frame_shape(shape: Sequence[int], channels: int) -> bool:
    """Whether ``shape`` is a whole image frame (channels, H, W) with H, W ≥ 1.

    The one check the edge (a source's frames), the bundle (which latents a frame gives) and
    the decoder (a stream header's shapes) share.
    """
    return len(shape) == 3 and int(shape[0]) == channels and min(int(v) for v in shape[1:]) >= 1


def check_frame(data: np.ndarray, channels: int) -> np.ndarray:
    """Return a whole image frame as float32 (channels, H, W) or raise :class:`SourceError`."""
    arr = np.asarray(data, dtype=np.float32)
    if not is_frame_shape(arr.shape, channels):
        raise SourceError(f"frame shape {arr.shape} is not ({channels}, H, W)")
    if not np.isfinite(arr).all():
        raise SourceError("frame contains NaN or infinite values")
    return arr


def check_window(data: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Return ``data`` as float32 of ``input_shape`` or raise :class:`SourceError`."""
    arr = np.asarray(data, dtype=np.float32)
    if arr.shape != tuple(input_shape):
        raise SourceError(f"window shape {arr.shape} != expected {tuple(input_shape)}")
    if not np.isfinite(arr).all():
        raise SourceError("window contains NaN or infinite values")
    return arr
