"""Bjøntegaard delta rate (VCEG-M33) and rate at matched quality.

BD-rate: the average difference of log-rate between two R–D curves over the quality range
both cover, expressed as a percentage rate change of the test curve against the anchor.
Log-rate is interpolated as a function of quality either by the original cubic polynomial
fit (``method="cubic"``, needs ≥ 4 points per curve) or by monotone piecewise-cubic
Hermite interpolation (``method="pchip"``, the variant JVET's CTC adopted; needs ≥ 2 points).
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(rate, quality) -> tuple[np.ndarray, np.ndarray]:
    r, q = np.asarray(rate, float), np.asarray(quality, float)
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    if len(q) == 0:
        return q, r
    order = np.argsort(q)
    q, lr = q[order], np.log(r[order])
    # Equal qualities would make the interpolant ill-defined: keep the lowest rate.
    keep = np.concatenate([[True], np.diff(q) > 1e-12])
    return q[keep], lr[keep]


def _integral(q: np.ndarray, lr: np.ndarray, lo: float, hi: float, method: str) -> float:
    if method == "cubic":
        if len(q) < 4:
            raise ValueError("cubic BD-rate needs at least 4 points per curve")
        poly = np.polyint(np.polyfit(q, lr, 3))
        return float(np.polyval(poly, hi) - np.polyval(poly, lo))
    if method == "pchip":
        return float(PchipInterpolator(q, lr).integrate(lo, hi))
    raise ValueError(f"unknown BD-rate method {method!r} (cubic | pchip)")


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "pchip",
            lo: float | None = None, hi: float | None = None) -> float:
    """Average rate change of the test curve against the anchor, in percent (negative = saves bits).

    The average runs over the quality range both curves cover, narrowed to [``lo``, ``hi``]
    when given. Returns NaN when that range is empty or a curve has < 2 points.
    """
    qa, la = _curve(anchor_rate, anchor_quality)
    qt, lt = _curve(test_rate, test_quality)
    if len(qa) < 2 or len(qt) < 2:
        return float("nan")
    lo = max(qa.min(), qt.min(), -np.inf if lo is None else lo)
    hi = min(qa.max(), qt.max(), np.inf if hi is None else hi)
    if hi <= lo:
        return float("nan")
    diff = (_integral(qt, lt, lo, hi, method) - _integral(qa, la, lo, hi, method)) / (hi - lo)
    return float((np.exp(diff) - 1.0) * 100.0)


def rate_at(rate, quality, target: float) -> float:
    """Rate at quality ``target`` by pchip interpolation of log-rate; NaN outside the measured range."""
    q, lr = _curve(rate, quality)
    if len(q) == 0 or not q.min() <= target <= q.max():
        return float("nan")
    if len(q) == 1:
        return float(np.exp(lr[0]))
    return float(np.exp(PchipInterpolator(q, lr)(target)))


def bd_psnr(anchor_rate, anchor_quality, test_rate, test_quality) -> float:
    """Average quality difference of the test curve against the anchor at equal rate (dB; positive = better).

    Quality is interpolated as a monotone (pchip) function of log-rate and averaged over the
    log-rate range both curves cover. Returns NaN when that range is empty or a curve has < 2 points.
    """
    curves = []
    for rate, quality in ((anchor_rate, anchor_quality), (test_rate, test_quality)):
        r, q = np.asarray(rate, float), np.asarray(quality, float)
        ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
        lr, q = np.log(r[ok]), q[ok]
        order = np.argsort(lr)
        lr, q = lr[order], q[order]
        keep = np.concatenate([[True], np.diff(lr) > 1e-12]) if len(lr) else np.zeros(0, bool)
        curves.append((lr[keep], q[keep]))
    if any(len(lr) < 2 for lr, _ in curves):
        return float("nan")
    lo, hi = max(lr.min() for lr, _ in curves), min(lr.max() for lr, _ in curves)
    if hi <= lo:
        return float("nan")
    (la, qa), (lt, qt) = curves
    return float((PchipInterpolator(lt, qt).integrate(lo, hi) - PchipInterpolator(la, qa).integrate(lo, hi)) / (hi - lo))
