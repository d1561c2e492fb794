"""Sensor sources: synthetic generators and readers of real formats."""

from ndsc.sources.base import (
    SourceError,
    Window,
    WindowSource,
    check_window,
    open_source,
    parse_kv,
    register_source,
    registered_schemes,
)

__all__ = [
    "SourceError",
    "Window",
    "WindowSource",
    "check_window",
    "open_source",
    "parse_kv",
    "register_source",
    "registered_schemes",
]
