"""Distortion on audited windows: raw windows matched with their reconstructions."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from fusion_decoder.metrics import DecoderMetrics


class AuditBook:
    """Matches audited raw windows with their reconstructions; keeps running distortion sums.

    Audits and reconstructions may arrive in either order, so each side waits (bounded)
    for the other. Distortion is over all audited samples of a (group, source):
    RMSE = √(SSE/n), PRD = 100·√(SSE/Σx²), PSNR = 10·log10(range²/MSE).
    """

    def __init__(self, metrics: DecoderMetrics, keep: int = 128):
        self.metrics = metrics
        self.keep = keep
        self._recent: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._waiting: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._sums: dict[tuple[str, int], list[float]] = {}  # sse, sum x², n, min, max

    def add_reconstruction(self, group: str, window: int, x_hat: np.ndarray,
                           present: np.ndarray | None = None) -> None:
        present = np.ones(x_hat.shape[0], bool) if present is None else present
        self._recent[(group, window)] = (x_hat, present)
        _trim(self._recent, self.keep)
        for source in range(x_hat.shape[0]):
            raw = self._waiting.pop((group, window, source), None)
            if raw is not None:
                self._score(group, source, raw, x_hat[source], not present[source])

    def add_raw(self, group: str, window: int, source: int, raw: np.ndarray) -> bool:
        recent = self._recent.get((group, window))
        if recent is None:
            self._waiting[(group, window, source)] = raw
            _trim(self._waiting, self.keep)
            return False
        x_hat, present = recent
        self._score(group, source, raw, x_hat[source], not present[source])
        return True

    def forget(self, group: str) -> None:
        """Drop every held reconstruction, audit and distortion sum of ``group``."""
        for d in (self._recent, self._waiting, self._sums):
            for key in [k for k in d if k[0] == group]:
                del d[key]

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


def _trim(d: OrderedDict, keep: int) -> None:
    while len(d) > keep:
        d.popitem(last=False)
