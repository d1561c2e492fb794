"""Distortion on audited windows: raw windows matched with their reconstructions."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np

from fusion_decoder.metrics import DecoderMetrics


class AuditBook:
    """Matches audited raw windows with their reconstructions; keeps running distortion sums.

    Audits and reconstructions may arrive in either order, so each side waits (bounded)
    for the other. Distortion is over all audited samples of a (group, source):
    RMSE = √(SSE/n), PRD = 100·√(SSE/Σx²), PSNR = 10·log10(range²/MSE).

    What waits is bounded per group (``keep`` reconstructions and ``keep`` audits) and in bytes
    (``max_bytes`` over all groups; beyond it the group holding the most bytes gives up its oldest
    entry, so a group with big frames or a flood of audits evicts its own, never another group's).
    Audits of a group with no stream yet (``known`` says False) share ``stranger_keep`` places.
    An audit dropped before its reconstruction came is counted, ``ndsc_audit_rejected_total{reason=
    "unmatched"}``. Reconstructions are copied in: a view would hold its whole decode batch.
    """

    def __init__(self, metrics: DecoderMetrics, keep: int = 128, max_bytes: int = 256 << 20,
                 known: Callable[[str], bool] = lambda group: True, stranger_keep: int = 64):
        self.metrics = metrics
        self.keep, self.max_bytes, self.stranger_keep = keep, max_bytes, stranger_keep
        self.known = known
        self._recent: dict[str, OrderedDict[int, tuple[np.ndarray, np.ndarray]]] = {}
        # (window, source) → (raw, held as a stranger's: counted in _strangers)
        self._waiting: dict[str, OrderedDict[tuple[int, int], tuple[np.ndarray, bool]]] = {}
        self._bytes: dict[str, int] = {}  # per group, reconstructions and audits held
        self._total = 0  # their sum
        self._strangers = 0  # audits held for groups with no stream
        self._sums: dict[tuple[str, int, bool], list[float]] = {}  # sse, sum x², n, min, max

    @property
    def held_bytes(self) -> int:
        """Bytes of reconstructions and audits held, all groups."""
        return self._total

    def add_reconstruction(self, group: str, window: int, x_hat: np.ndarray,
                           present: np.ndarray | None = None) -> None:
        present = np.ones(x_hat.shape[0], bool) if present is None else np.array(present, bool)
        waiting = self._waiting.get(group)
        matched = [s for s in range(x_hat.shape[0]) if waiting and (window, s) in waiting]
        for source in matched:
            raw = self._pop_waiting(group, (window, source))
            self._score(group, source, raw, x_hat[source], not present[source])
        if len(matched) == x_hat.shape[0]:
            return  # every source audited: nothing can match it later
        recent = self._recent.setdefault(group, OrderedDict())
        old = recent.pop(window, None)
        if old is not None:
            self._account(group, -old[0].nbytes)
        x_hat = np.array(x_hat, copy=True)
        recent[window] = (x_hat, present)
        self._account(group, x_hat.nbytes)
        while len(recent) > self.keep:
            self._drop_oldest_reconstruction(group)
        self._fit_bytes()

    def add_raw(self, group: str, window: int, source: int, raw: np.ndarray) -> bool:
        book = self._recent.get(group)
        recent = book.get(window) if book is not None else None
        if recent is None:
            stranger = not self.known(group)
            if stranger and self._strangers >= self.stranger_keep:
                self.metrics.audit_rejected.labels("unmatched").inc()
                return False
            waiting = self._waiting.setdefault(group, OrderedDict())
            if (window, source) in waiting:
                self._pop_waiting(group, (window, source))
            waiting[(window, source)] = (raw, stranger)
            self._account(group, raw.nbytes)
            self._strangers += stranger
            while len(waiting) > self.keep:
                self._drop_oldest_audit(group)
            self._fit_bytes()
            return False
        x_hat, present = recent
        self._score(group, source, raw, x_hat[source], not present[source])
        return True

    def forget(self, group: str) -> None:
        """Drop every held reconstruction, audit and distortion sum of ``group``."""
        for waiting_key in list(self._waiting.get(group, ())):
            self._pop_waiting(group, waiting_key)
        self._recent.pop(group, None)
        self._waiting.pop(group, None)
        self._total -= self._bytes.pop(group, 0)
        for key in [k for k in self._sums if k[0] == group]:
            del self._sums[key]

    def _pop_waiting(self, group: str, key: tuple[int, int]) -> np.ndarray:
        raw, stranger = self._waiting[group].pop(key)
        self._account(group, -raw.nbytes)
        self._strangers -= stranger
        return raw

    def _account(self, group: str, nbytes: int) -> None:
        self._bytes[group] = self._bytes.get(group, 0) + nbytes
        self._total += nbytes

    def _fit_bytes(self) -> None:
        """Over ``max_bytes``: the group holding the most gives up its oldest audit, else reconstruction."""
        while self._total > self.max_bytes:
            group = max(self._bytes, key=self._bytes.__getitem__)
            if self._waiting.get(group):
                self._drop_oldest_audit(group)
            elif self._recent.get(group):
                self._drop_oldest_reconstruction(group)
            else:  # cannot happen: a group's bytes are what it holds
                return

    def _drop_oldest_audit(self, group: str) -> None:
        """An audit that will never be matched now: counted as unmatched."""
        self._pop_waiting(group, next(iter(self._waiting[group])))
        self.metrics.audit_rejected.labels("unmatched").inc()

    def _drop_oldest_reconstruction(self, group: str) -> None:
        self._account(group, -self._recent[group].popitem(last=False)[1][0].nbytes)

    def _score(self, group: str, source: int, x: np.ndarray, x_hat: np.ndarray, estimated: bool = False) -> None:
        """Distortion sums kept apart for decoded and for estimated (node missing) sources."""
        if x.shape != x_hat.shape:  # an audit of another frame size than the window decoded
            self.metrics.audit_rejected.labels("shape_differs").inc()
            return
        x64, err = x.astype(np.float64), x.astype(np.float64) - x_hat.astype(np.float64)
        s = self._sums.setdefault((group, source, estimated), [0.0, 0.0, 0, math.inf, -math.inf])
        s[0] += float(np.sum(err**2))
        s[1] += float(np.sum(x64**2))
        s[2] += x64.size
        s[3], s[4] = min(s[3], float(x64.min())), max(s[4], float(x64.max()))
        mse = s[0] / s[2]
        labels = (group, str(source))
        if estimated:
            self.metrics.audit_estimated_windows.labels(*labels).inc()
            self.metrics.audit_estimated_rmse.labels(*labels).set(math.sqrt(mse))
            self.metrics.audit_estimated_prd.labels(*labels).set(100 * math.sqrt(s[0] / s[1]) if s[1] else math.inf)
            return
        self.metrics.audit_windows.labels(*labels).inc()
        self.metrics.audit_rmse.labels(*labels).set(math.sqrt(mse))
        self.metrics.audit_prd.labels(*labels).set(100 * math.sqrt(s[0] / s[1]) if s[1] else math.inf)
        peak = (s[4] - s[3]) or 1.0
        self.metrics.audit_psnr.labels(*labels).set(10 * math.log10(peak**2 / mse) if mse else math.inf)
