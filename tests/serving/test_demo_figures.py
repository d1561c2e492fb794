"""The demo's figures: steady rates over a span of windows, raw = channels × rate × 16, p50/p99, totals.

Scrapes are built as the decoder's counters grow when an ECG window (2.048 s) lands
every 2.048 s while the table refreshes every second: the old per-refresh rate flipped
between twice the true rate and zero on exactly this input.
"""
from __future__ import annotations

import math

import pytest

from ndsc.bundle import load_bundle
from app.demo_figures import SPAN_WINDOWS, Dashboard, histogram_quantile, render
from tests.conftest import REPO

BYTES_PER_WINDOW = 130  # per node


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(REPO / "ndsc" / "bundles" / "ecg-12lead")


def _scrape(windows: int, latencies: list[float]) -> dict:
    """Counters of a decoder that has accepted ``windows`` windows from each of 4 nodes of 3 × 1024 samples."""
    out = {("ndsc_reconstructions_total", (("group", "demo"),)): float(windows)}
    for i in range(4):
        labels = (("group", "demo"), ("source", str(i)))
        out[("ndsc_uplink_accepted_payload_bytes_total", labels)] = float(BYTES_PER_WINDOW * windows)
        out[("ndsc_uplink_samples_total", labels)] = float(3 * 1024 * windows)
        out[("ndsc_uplink_protocol_bytes_total", (("group", "demo"), ("node", f"node{i}"), ("source", str(i))))] = \
            float(20 * windows)
        out[("ndsc_frames_total", (("group", "demo"), ("node", f"node{i}"), ("status", "accepted")))] = float(windows)
    for le in (0.01, 0.025, 0.05, 0.1, math.inf):
        out[("ndsc_capture_to_reconstruction_seconds_bucket", (("group", "demo"), ("le", str(le))))] = \
            float(sum(1 for v in latencies if v <= le))
    out[("ndsc_capture_to_reconstruction_seconds_count", (("group", "demo"),))] = float(len(latencies))
    return out


def test_rates_hold_still_while_windows_arrive_in_bursts(bundle):
    period = 1024 / 500
    dash = Dashboard(bundle, 4)
    assert dash.span >= SPAN_WINDOWS * period
    truth = 8 * BYTES_PER_WINDOW / period / 1000  # kbit/s per node
    shown = []
    for t in range(1, 60):
        windows = int(max(0.0, t - 3) / period)  # first window due 3 s + one period in
        dash.add(_scrape(windows, [0.02] * 4 * windows), float(t))
        fig = dash.live()
        if windows:
            shown.append([n.kbit_per_s for n in fig.nodes])
        else:
            assert fig.payload_kbit_per_s is None and all(n.kbit_per_s is None for n in fig.nodes)
    assert len(shown) > 40
    for row in shown:  # every refresh, not an average of refreshes
        assert row == pytest.approx([truth] * 4, rel=1e-9)


def test_raw_reference_is_channels_times_rate_times_16_and_the_summary_adds_up_the_table(bundle):
    dash = Dashboard(bundle, 4)
    dash.add(_scrape(0, []), 0.0)
    dash.add(_scrape(3, [0.02] * 12), 7.0)
    fig = dash.live()
    assert [n.raw_kbit_per_s for n in fig.nodes] == [3 * 500 * 16 / 1000] * 4
    assert fig.raw_kbit_per_s == 12 * 500 * 16 / 1000 == 96.0
    assert fig.payload_kbit_per_s == pytest.approx(sum(n.kbit_per_s for n in fig.nodes))
    assert fig.ratio == pytest.approx(96.0 / fig.payload_kbit_per_s)
    text = render(fig, "title")
    assert f"vs raw 16-bit 96.0 kbit/s ({fig.ratio:.0f}x smaller)" in text
    assert f"total uplink {fig.payload_kbit_per_s:.3f} kbit/s payload" in text


def test_totals_cover_the_whole_run_after_the_span_has_moved_on(bundle):
    dash = Dashboard(bundle, 4)
    for t in range(0, 61):
        dash.add(_scrape(t // 2, [0.02] * (t // 2) * 4), float(t))
    assert dash.full and dash.live().latency_count < dash.totals().latency_count
    totals = dash.totals()
    assert totals.latency_count == 4 * 30 and totals.windows == 30
    assert [n.frames for n in totals.nodes] == [30.0] * 4
    assert totals.payload_bytes == 4 * 30 * BYTES_PER_WINDOW


def test_latency_quantiles_interpolate_within_buckets_as_prometheus_does():
    cumulative = [(0.01, 0.0), (0.025, 50.0), (0.05, 99.0), (0.1, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, cumulative) == pytest.approx(0.025)
    assert histogram_quantile(0.25, cumulative) == pytest.approx(0.0175)
    assert histogram_quantile(0.99, cumulative) == pytest.approx(0.05)
    assert histogram_quantile(0.5, [(0.01, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.99, [(0.01, 1.0), (math.inf, 100.0)]) == 0.01  # beyond the last bound
