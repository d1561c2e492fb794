"""Rate–distortion analysis of ECG operating points: frontiers, equal-PRDN savings, BD-rate, and the
measurement of points with real bytes (a bundle's quality points, the conventional anchors).

Every point is a dict with ``bits_per_sample_per_lead`` (real bytes) and PRDN figures
(``prdn_percent`` pooled over all leads, ``prdn_mean_of_leads_percent``,
``prdn_worst_lead_percent``, as :func:`training.ecg_eval.ecg_report` writes them); ``key``
picks which PRDN a comparison runs on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from training.study.bdrate import bd_rate

RATE = "bits_per_sample_per_lead"
POOLED, MEAN_OF_LEADS, WORST_LEAD = "prdn_percent", "prdn_mean_of_leads_percent", "prdn_worst_lead_percent"


def frontier(points: list[dict], key: str = POOLED) -> list[dict]:
    """The points no other point beats on both rate and PRDN, by rate.

    A sweep can leave dominated points (more bits for no lower PRDN, or a diverged run);
    interpolating through them would bend a curve the wrong way.
    """
    def beaten(p: dict) -> bool:
        r, d = p[RATE], p[key]
        return any(q[RATE] <= r and q[key] <= d and (q[RATE] < r or q[key] < d) for q in points)

    return sorted((p for p in points if not beaten(p)), key=lambda p: p[RATE])


def rate_on_curve(curve: list[dict], prdn: float, key: str = POOLED) -> float:
    """Rate of ``curve``'s frontier at ``prdn`` (log-rate linear in PRDN); NaN outside its PRDN range."""
    pts = sorted((p[key], np.log(p[RATE])) for p in frontier(curve, key))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if len(xs) < 2 or not xs[0] <= prdn <= xs[-1]:
        return float("nan")
    return float(np.exp(np.interp(prdn, xs, ys)))


def savings_at_equal_prdn(test: list[dict], anchor: list[dict], key: str = POOLED) -> list[dict]:
    """For each frontier point of ``test`` inside the anchor frontier's PRDN range: rate saved (%)."""
    out = []
    for p in frontier(test, key):
        anchor_rate = rate_on_curve(anchor, p[key], key)
        if not np.isnan(anchor_rate):
            out.append({"prdn_percent": p[key], "anchor_bits": anchor_rate, "test_bits": p[RATE],
                        "saving_percent": 100 * (1 - p[RATE] / anchor_rate),
                        # the names the separate-vs-distributed tables print
                        "separate_bits": anchor_rate, "distributed_bits": p[RATE]})
    return out


def bd_saving(test: list[dict], anchor: list[dict], key: str = POOLED,
              lo: float | None = None, hi: float | None = None) -> dict[str, float]:
    """BD-rate of ``test`` against ``anchor`` frontiers (pchip on log-rate) over the PRDN range both
    cover, narrowed to [lo, hi]; ``saving_percent`` positive = ``test`` needs fewer bits.

    NaN when the curves share no PRDN range or one has fewer than 2 points.
    """
    test, anchor = frontier(test, key), frontier(anchor, key)
    if len(test) < 2 or len(anchor) < 2:
        return {"lo": float("nan"), "hi": float("nan"), "saving_percent": float("nan")}
    rate = [[p[RATE] for p in c] for c in (anchor, test)]
    prdn = [[p[key] for p in c] for c in (anchor, test)]
    span_lo = max(min(prdn[0]), min(prdn[1]), -np.inf if lo is None else lo)
    span_hi = min(max(prdn[0]), max(prdn[1]), np.inf if hi is None else hi)
    change = bd_rate(rate[0], prdn[0], rate[1], prdn[1], method="pchip", lo=lo, hi=hi)
    return {"lo": span_lo, "hi": span_hi, "saving_percent": -change}


def best_prdn_at_rate(points: list[dict], max_bits: float = 0.5, key: str = POOLED) -> dict[str, float]:
    """Lowest measured PRDN at ≤ ``max_bits`` bit/sample/lead, and the PRDN interpolated
    (linearly in log-rate along the frontier) at exactly ``max_bits`` when the frontier spans it."""
    points = frontier(points, key)
    inside = [p for p in points if p[RATE] <= max_bits]
    best = min(inside, key=lambda p: p[key]) if inside else None
    pts = sorted((np.log(p[RATE]), p[key]) for p in points)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    at = float(np.interp(np.log(max_bits), xs, ys)) if len(xs) >= 2 and xs[0] <= np.log(max_bits) <= xs[-1] \
        else float("nan")
    return {"measured_prdn_percent": best[key] if best else float("nan"),
            "measured_bits": best[RATE] if best else float("nan"),
            "interpolated_prdn_percent": at}


def points_above_curve(test: list[dict], anchor: list[dict], key: str = MEAN_OF_LEADS) -> list[dict]:
    """Points of ``test`` (all, not only its frontier) that need at least the anchor's rate at their PRDN.

    Points outside the anchor's PRDN range cannot be compared and are not returned.
    """
    out = []
    for p in test:
        anchor_rate = rate_on_curve(anchor, p[key], key)
        if not np.isnan(anchor_rate) and p[RATE] >= anchor_rate:
            out.append(p)
    return out


def clinical_point(points: list[dict], max_prdn: float = 5.0, max_lead: float = 9.0) -> dict | None:
    """The lowest-rate point with mean-of-leads PRDN ≤ ``max_prdn`` and no lead above ``max_lead``."""
    ok = [p for p in points if p[MEAN_OF_LEADS] <= max_prdn and p[WORST_LEAD] <= max_lead]
    return min(ok, key=lambda p: p[RATE]) if ok else None


# --- measuring operating points with real bytes (benchmarks/ecg.py drives these) ---

def measure_points(path: Path, windows: np.ndarray, leads: list[str], fs: float) -> list[dict]:
    """Every quality point of a bundle (or its one point) on ``windows``: real bytes, ECG figures."""
    from ndsc.bundle import load_bundle
    from training.ecg_eval import ecg_report
    from training.evaluate import evaluate_bundle

    bundle = load_bundle(path)
    rows = []
    for quality in bundle.quality_names or (None,):
        report = ecg_report(evaluate_bundle(path, windows=windows, quality=quality), windows, leads, fs)
        report["quality"] = quality
        report["bundle"] = path.name
        report["train_seconds"] = float(bundle.evaluation.get("test", {}).get("train_seconds", float("nan")))
        rows.append(report)
    return rows


def measure_baseline(name: str, data, windows: np.ndarray, leads: list[str], fs: float, step_mv: float) -> dict:
    """A conventional codec (``wavelet-zstd``, ``dct-zstd``) at quantiser step ``step_mv``: real bytes."""
    from training.baselines.base import build_baseline
    from training.ecg_eval import ecg_report

    codec = build_baseline(name, step=step_mv)
    codec.fit(data)
    payloads = codec.compress(windows)
    x_hat = codec.decompress(payloads)
    sources = [{"name": f"node{i}", "payload_bytes": sum(len(row[i]) for row in payloads)}
               for i in range(windows.shape[1])]
    result = {"x_hat": x_hat, "payload_bytes": sum(s["payload_bytes"] for s in sources), "sources": sources}
    report = ecg_report(result, windows, leads, fs)
    report["step_mv"] = step_mv
    return report


def measure_dct(data, windows: np.ndarray, leads: list[str], fs: float, step_mv: float) -> dict:
    return measure_baseline("dct-zstd", data, windows, leads, fs, step_mv)


def measure_wavelet(data, windows: np.ndarray, leads: list[str], fs: float, step_mv: float) -> dict:
    return measure_baseline("wavelet-zstd", data, windows, leads, fs, step_mv)
