"""The source abstraction every edge node reads from, and the scheme registry.

A source spec is ``scheme:arguments`` (``gaussian:rho=0.9,n=2``, ``ecg-synth:seed=3``,
later ``wfdb:PATH#leads=I,II`` …). Readers register their scheme with
:func:`register_source`; the edge node only calls :func:`open_source`, so adding a
reader never touches the node.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, runtime_checkable

import numpy as np

from ndsc.plugins import import_optional


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


SourceFactory = Callable[[str, int, tuple[int, ...]], WindowSource]
_REGISTRY: dict[str, SourceFactory] = {}


def register_source(scheme: str) -> Callable[[SourceFactory], SourceFactory]:
    """Register ``factory(arguments, source_index, input_shape)`` for ``scheme:``."""

    def deco(factory: SourceFactory) -> SourceFactory:
        _REGISTRY[scheme] = factory
        return factory

    return deco


def registered_schemes() -> list[str]:
    _load_builtin_readers()
    return sorted(_REGISTRY)


def _load_builtin_readers() -> None:
    # Import for the side effect of registration; readers with optional deps register lazily.
    from ndsc.sources import synthetic  # noqa: F401
    import_optional("ndsc.sources.ecg", "ndsc.sources.images", "ndsc.sources.stream")


def open_source(spec: str, source_index: int, input_shape: tuple[int, ...]) -> WindowSource:
    """Open the window source named by ``spec`` for source ``source_index``.

    Args:
        spec: ``scheme:arguments``.
        source_index: which of the bundle's sources this node is.
        input_shape: the window shape the node's encoder expects (from the bundle).
    Raises:
        SourceError: unknown scheme or bad arguments.
    """
    _load_builtin_readers()
    scheme, _, args = spec.partition(":")
    if scheme not in _REGISTRY:
        raise SourceError(f"unknown source scheme {scheme!r} in {spec!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[scheme](args, source_index, tuple(input_shape))


def parse_kv(args: str) -> dict[str, str]:
    """Parse ``a=1,b=x`` into a dict (empty string gives an empty dict)."""
    out: dict[str, str] = {}
    for part in filter(None, args.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise SourceError(f"expected key=value, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def paced(windows: Iterator[Window], period: float, realtime: bool) -> Iterator[Window]:
    """Re-yield ``windows`` no faster than one per ``period`` seconds when ``realtime``.

    ``t_capture`` is stamped when the window is released, i.e. when its last sample
    would have been captured by a live sensor.
    """
    start = time.monotonic()
    wall0 = time.time()
    for k, w in enumerate(windows):
        if realtime:
            due = start + (k + 1) * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield Window(w.index, w.data, wall0 + (k + 1) * period)
        else:
            yield Window(w.index, w.data, time.time())


def check_window(data: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Return ``data`` as float32 of ``input_shape`` or raise :class:`SourceError`."""
    arr = np.asarray(data, dtype=np.float32)
    if arr.shape != tuple(input_shape):
        raise SourceError(f"window shape {arr.shape} != expected {tuple(input_shape)}")
    if not np.isfinite(arr).all():
        raise SourceError("window contains NaN or infinite values")
    return arr
