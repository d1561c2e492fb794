"""The demo's figures, from scrapes of the decoder's Prometheus endpoint.

Rates are taken over a sliding span of scrapes that covers several windows
(:data:`SPAN_WINDOWS`, at least :data:`SPAN_MIN_SECONDS`), never over one refresh: a
window of ECG arrives every 2.05 s, so a 1 s difference flips between twice the rate
and zero. A node's rate is the bytes of the windows accepted in the span per second
of signal they cover (``8 × Δbytes / (Δsamples / samples-per-second)``), which in real
time is its rate per wall second and stays put while windows arrive in bursts. The raw
16-bit reference is channels × sample rate × 16 bits. Bundles without a sample rate
(Gaussian, images) fall back to the span's wall time.

One :class:`Figures` object feeds both the table and the line under it, so they agree;
the final screen is the same computation over the whole run.
"""
from __future__ import annotations

import math
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Iterable

from ndsc.bundle import Bundle

#: a rate spans at least this many windows of the bundle's sources ...
SPAN_WINDOWS = 5
#: ... and at least this many seconds
SPAN_MIN_SECONDS = 10.0
#: bits per raw sample of the reference rate (int16, as ECG front ends deliver)
RAW_BITS = 16

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """One Prometheus text scrape → {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def select(samples: Samples, name: str, **match: str) -> dict[tuple, float]:
    """Samples named ``name`` whose labels include ``match``."""
    return {labels: v for (n, labels), v in samples.items()
            if n == name and all(dict(labels).get(k) == val for k, val in match.items())}


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``match``."""
    return sum(select(samples, name, **match).values())


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Quantile ``q`` of a histogram given as (upper bound, cumulative count) pairs.

    Linear within the bucket that holds it, as Prometheus' ``histogram_quantile``;
    None without observations. A quantile in the ``+Inf`` bucket is the largest finite bound.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


@dataclass
class NodeFigures:
    """One node's row: counts since start, rates over the span."""

    name: str
    source: str
    frames: float
    kbit_per_s: float | None       # payload per second of signal; None before its first window
    raw_kbit_per_s: float | None   # channels × rate × 16 bits
    bits_per_sample: float | None
    psnr_db: float | None          # audited windows (1 in --audit-every), since start
    prd_percent: float | None
    rmse: float | None


@dataclass
class Figures:
    """Everything the demo shows at one moment (or for the whole run)."""

    nodes: list[NodeFigures]
    payload_kbit_per_s: float | None
    protocol_kbit_per_s: float | None
    raw_kbit_per_s: float | None
    windows: float                 # reconstructed since start
    estimated: float               # source-windows estimated (node late or missing) since start
    latency_p50_s: float | None
    latency_p99_s: float | None
    latency_count: float
    span_seconds: float
    payload_bytes: float           # in the span

    @property
    def ratio(self) -> float | None:
        """Raw 16-bit rate over payload rate."""
        if self.raw_kbit_per_s and self.payload_kbit_per_s:
            return self.raw_kbit_per_s / self.payload_kbit_per_s
        return None


def _first(d: dict) -> float | None:
    return next(iter(d.values())) if d else None


def _per_second_of_signal(bundle: Bundle, index: int) -> float | None:
    """Input samples per second of signal of source ``index`` (C × fs), or None without a rate."""
    if not bundle.sample_rate:
        return None
    shape = bundle.sources[index].input_shape
    return bundle.sources[index].samples_per_window / shape[-1] * float(bundle.sample_rate)


def compute(bundle: Bundle, nodes: int, older: Samples, newer: Samples, seconds: float) -> Figures:
    """Figures between two scrapes ``seconds`` apart (``older`` = {} for totals since start)."""
    def delta(name: str, **match: str) -> float:
        return total(newer, name, **match) - total(older, name, **match)

    rows, payload_rate, protocol_rate, raw_rate = [], 0.0, 0.0, 0.0
    rated = 0
    for i in range(nodes):
        src = str(i)
        d_bytes = delta("ndsc_uplink_accepted_payload_bytes_total", source=src)
        d_proto = delta("ndsc_uplink_protocol_bytes_total", source=src)
        d_samples = delta("ndsc_uplink_samples_total", source=src)
        per_s = _per_second_of_signal(bundle, i)
        if per_s is not None:
            signal_s = d_samples / per_s
            raw = RAW_BITS * per_s / 1000
        else:
            signal_s = seconds
            raw = RAW_BITS * d_samples / seconds / 1000 if seconds > 0 else None
        kbps = 8 * d_bytes / signal_s / 1000 if signal_s > 0 and d_samples > 0 else None
        if kbps is not None:
            rated += 1
            payload_rate += kbps
            protocol_rate += 8 * d_proto / signal_s / 1000
        if raw is not None:
            raw_rate += raw
        rows.append(NodeFigures(
            name=f"node{i}", source=bundle.sources[i].name,
            frames=total(newer, "ndsc_frames_total", node=f"node{i}", status="accepted"),
            kbit_per_s=kbps, raw_kbit_per_s=raw,
            bits_per_sample=8 * d_bytes / d_samples if d_samples > 0 else None,
            psnr_db=_first(select(newer, "ndsc_audit_psnr_db", source=src)),
            prd_percent=_first(select(newer, "ndsc_audit_prd_percent", source=src)),
            rmse=_first(select(newer, "ndsc_audit_rmse", source=src))))
    buckets: dict[float, float] = {}
    for labels, value in select(newer, "ndsc_capture_to_reconstruction_seconds_bucket").items():
        le = float(dict(labels)["le"])
        buckets[le] = buckets.get(le, 0.0) + value - older.get(
            ("ndsc_capture_to_reconstruction_seconds_bucket", labels), 0.0)
    return Figures(
        nodes=rows, payload_kbit_per_s=payload_rate if rated else None,
        protocol_kbit_per_s=protocol_rate if rated else None, raw_kbit_per_s=raw_rate or None,
        windows=total(newer, "ndsc_reconstructions_total"),
        estimated=total(newer, "ndsc_aligner_missing_sources_total"),
        latency_p50_s=histogram_quantile(0.5, buckets.items()),
        latency_p99_s=histogram_quantile(0.99, buckets.items()),
        latency_count=delta("ndsc_capture_to_reconstruction_seconds_count"),
        span_seconds=seconds,
        payload_bytes=delta("ndsc_uplink_accepted_payload_bytes_total"))


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f} ms"


def render(fig: Figures, title: str) -> str:
    """The table and the lines under it, all from ``fig``."""
    lines = [title,
             f"{'node':<8}{'source':<12}{'frames':>8}{'uplink kbit/s':>15}{'raw kbit/s':>12}{'bits/sample':>13}"
             f"{'PSNR dB':>9}{'PRD %':>8}{'RMSE':>9}"]
    for n in fig.nodes:
        lines.append(f"{n.name:<8}{n.source[:11]:<12}{n.frames:>8.0f}{_num(n.kbit_per_s, '{:.3f}'):>15}"
                     f"{_num(n.raw_kbit_per_s, '{:.1f}'):>12}{_num(n.bits_per_sample, '{:.3f}'):>13}"
                     f"{_num(n.psnr_db, '{:.1f}'):>9}{_num(n.prd_percent, '{:.1f}'):>8}{_num(n.rmse, '{:.4f}'):>9}")
    ratio = f"{fig.ratio:.0f}x smaller" if fig.ratio else "-"
    lines += [
        f"total uplink {_num(fig.payload_kbit_per_s, '{:.3f}')} kbit/s payload + "
        f"{_num(fig.protocol_kbit_per_s, '{:.3f}')} kbit/s protocol vs raw 16-bit "
        f"{_num(fig.raw_kbit_per_s, '{:.1f}')} kbit/s ({ratio})",
        f"reconstructed {fig.windows:.0f} windows, {fig.estimated:.0f} source-windows estimated (node late/missing); "
        f"capture→reconstruction p50 {_ms(fig.latency_p50_s)}, p99 {_ms(fig.latency_p99_s)} "
        f"({fig.latency_count:.0f} frames)",
    ]
    return "\n".join(lines)


class Dashboard:
    """Keeps the scrapes of a sliding span and renders the live table and the run's totals."""

    def __init__(self, bundle: Bundle, nodes: int):
        self.bundle = bundle
        self.nodes = nodes
        period = (bundle.sources[0].input_shape[-1] / float(bundle.sample_rate)) if bundle.sample_rate else 0.0
        self.span = max(SPAN_MIN_SECONDS, SPAN_WINDOWS * period)
        self.scrapes: deque[tuple[float, Samples]] = deque()
        self.start: float | None = None

    def add(self, samples: Samples, now: float) -> None:
        """Record one scrape taken at monotonic time ``now``; drop those the span no longer needs."""
        if self.start is None:
            self.start = now
        self.scrapes.append((now, samples))
        while len(self.scrapes) > 2 and now - self.scrapes[1][0] >= self.span:
            self.scrapes.popleft()

    def live(self) -> Figures:
        """Figures over the span (over what there is, early on)."""
        (t0, older), (t1, newer) = self.scrapes[0], self.scrapes[-1]
        if not self.full:  # the span is not covered yet: the run so far
            older, t0 = {}, self.start
        return compute(self.bundle, self.nodes, older, newer, t1 - t0)

    @property
    def full(self) -> bool:
        """Whether the kept scrapes reach a full span back (the first ones have been dropped)."""
        return bool(self.scrapes) and self.scrapes[0][0] > self.start

    def totals(self) -> Figures:
        """Figures over the whole run: the last scrape against an empty decoder."""
        t1, newer = self.scrapes[-1]
        return compute(self.bundle, self.nodes, {}, newer, t1 - (self.start or t1))

    def render_live(self, elapsed: float) -> str:
        fig = self.live()
        span = f"the last {fig.span_seconds:.0f}s" if self.full else "the run so far"
        return render(fig, f"--- t={elapsed:.0f}s (rates and latency over {span}, {self._per})")

    def render_totals(self, elapsed: float) -> str:
        return render(self.totals(), f"=== run totals over {elapsed:.0f}s (rates {self._per})")

    @property
    def _per(self) -> str:
        return "per second of signal" if self.bundle.sample_rate else "per wall-clock second"
