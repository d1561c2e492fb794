"""Bounded log lines for events clients cause (refusals): a hostile client cannot flood the log.

Each refusal reason may write at most ``burst`` lines per ``interval`` seconds; the rest are
suppressed and counted (``ndsc_log_lines_suppressed_total{reason}``), and the next line that
reason writes says how many were suppressed since its last one. Reasons come from the
decoder's code (a fixed set), never from what a client sends, so the state stays bounded.

Pure logic with an injectable clock, tested directly::

    limiter = LogLimiter(burst=5, interval=10.0)
    allowed, suppressed = limiter.allow("crc_mismatch", now)   # log or not; how many were skipped
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Budget:
    start: float  # when the reason's current interval began
    written: int = 0  # lines written in that interval
    suppressed: int = 0  # lines suppressed since the reason's last written line


class LogLimiter:
    """At most ``burst`` lines per reason per ``interval`` seconds.

    Args:
        burst: lines one reason may write per interval.
        interval: seconds of one interval.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, burst: int = 5, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        if burst < 1 or interval <= 0:
            raise ValueError("burst must be >= 1 and interval > 0")
        self.burst, self.interval, self.clock = burst, interval, clock
        self._budgets: dict[str, _Budget] = {}

    def allow(self, reason: str, now: float | None = None) -> tuple[bool, int]:
        """Whether a line for ``reason`` may be written now, and (when it may) how many lines of
        that reason were suppressed since its last written one (to be said in the line)."""
        now = self.clock() if now is None else now
        b = self._budgets.get(reason)
        if b is None:
            b = self._budgets[reason] = _Budget(now)
        if now - b.start >= self.interval:
            b.start, b.written = now, 0
        if b.written >= self.burst:
            b.suppressed += 1
            return False, 0
        b.written += 1
        suppressed, b.suppressed = b.suppressed, 0
        return True, suppressed
