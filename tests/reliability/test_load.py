"""A lighter run of benchmarks/load.py: 100 simulated nodes in 50 groups, a few seconds."""
from __future__ import annotations

import asyncio

from tests.conftest import load_benchmark


def test_guarantee_100_nodes_in_50_groups_lose_no_frame(gaussian_bundle, tmp_path):
    load = load_benchmark("load")
    proc, address = load.start_decoder(gaussian_bundle, str(tmp_path / "state"), deadline=5.0)
    try:
        r = asyncio.run(load.run_load(gaussian_bundle, address, groups=50, duration=2.0, rate=5.0,
                                      decoder_pid=proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)
    assert r["nodes"] == 100
    assert r["lost_frames"] == 0 and r["frames_acked"] == r["frames_sent"] == 1000
    assert r["windows_reconstructed"] == r["windows_expected"] == 500
    assert r["duplicate_windows"] == 0 and r["complete_windows"] == 500
    assert r["decoder_rss_growth_mib"] < 200
    # the CPU accounting: the decoder's event loop ("main") and the load generator both worked
    assert r["decoder_cpu_us_per_frame"]["main"] > 0 and r["load_generator_cpu_us_per_frame"] > 0
    assert r["decoder_cpu_us_per_frame"]["total"] >= r["decoder_cpu_us_per_frame"]["main"]


def test_the_saturation_search_stops_at_the_first_rate_the_decoder_cannot_keep_up_with():
    load = load_benchmark("load")
    capacity = 1000.0  # frames/s a decoder of this model sustains

    def measure(rate: float) -> dict:
        nodes, scheduled = 20, 4.0
        offered = nodes * rate
        late = max(0.0, offered / capacity - 1.0) * scheduled  # the backlog it cannot clear in time
        return {"nodes": nodes, "rate_per_node": rate, "lost_frames": 0, "duplicate_windows": 0,
                "windows_reconstructed": 10, "windows_expected": 10, "scheduled_s": scheduled,
                "acked_elapsed_s": scheduled + 0.2 + late, "latency_p99_s": 0.05 + late}

    best, runs = load.find_saturation(measure, start_rate=10.0, step=1.5)
    assert [r["rate_per_node"] for r in runs] == [10.0, 15.0, 22.5, 33.75, 50.625, 75.9375]
    assert [r["sustained"] for r in runs] == [True] * 5 + [False]
    assert best["rate_per_node"] == 50.625  # 1012 frames/s offered: within 10 % + 1 s of schedule
    assert load.find_saturation(measure, start_rate=200.0)[0] is None  # not even the first run kept up


def test_the_search_retries_a_stalled_run_bisects_to_the_limit_and_runs_codes_in_lockstep():
    load = load_benchmark("load")
    calls: list[tuple[str, float]] = []

    def measuring(name: str, capacity: float, stall_at: float | None = None):
        def measure(rate: float) -> dict:
            calls.append((name, rate))
            over = max(0.0, 20 * rate / capacity - 1.0) * 4.0
            if rate == stall_at and calls.count((name, rate)) == 1:
                over = 5.0  # one stall of the machine: the retry keeps up
            return {"nodes": 20, "rate_per_node": rate, "lost_frames": 0, "duplicate_windows": 0,
                    "windows_reconstructed": 10, "windows_expected": 10, "scheduled_s": 4.0,
                    "acked_elapsed_s": 4.2 + over, "latency_p99_s": 0.05 + over}
        return measure

    found = load.search_together({
        "this": (load.saturation_search(10.0, 2.0, refine=2, retries=1), measuring("this", 1000.0, stall_at=20.0)),
        "base": (load.saturation_search(10.0, 2.0, refine=2, retries=1), measuring("base", 500.0))})
    assert found["this"][0]["rate_per_node"] == 40.0 * 2 ** 0.5  # 40 keeps up, 80 not; 56.6 yes, 67.3 no
    assert [r["sustained"] for r in found["this"][1]][:3] == [True, False, True]  # 20 stalled once, retried
    assert found["base"][0]["rate_per_node"] == 20.0 * 2 ** 0.5
    assert calls[:4] == [("this", 10.0), ("base", 10.0), ("base", 20.0), ("this", 20.0)]  # order alternates


def test_an_edge_like_node_behind_its_schedule_sends_its_backlog_in_fewer_messages(gaussian_bundle):
    """``--sender edge``: windows already due go out together (as EdgeNode sends a backlog), every
    one acknowledged; ``single`` writes one message per window whatever the backlog."""
    import time

    from ndsc.bundle import load_bundle

    load = load_benchmark("load")
    bundle = load_bundle(gaussian_bundle)
    payloads = load.coded_payloads(gaussian_bundle, n=4)
    proc, address = load.start_decoder(gaussian_bundle, None, deadline=5.0)
    try:
        got = {}
        for sender in ("edge", "single"):
            # a schedule that started 1 s ago at 20 windows/s: about 20 windows are due at once
            acked, messages = asyncio.run(load._node(address, bundle, f"backlog-{sender}", 0, payloads, 30, 20.0,
                                                     time.perf_counter() - 1.0, [], sender))
            got[sender] = (acked, messages)
        # on schedule at 100 windows/s, a 50 ms flush interval: about 5 windows a message
        got["flush"] = asyncio.run(load._node(address, bundle, "flush", 0, payloads, 30, 100.0, time.perf_counter(),
                                              [], "edge", 0.05))
    finally:
        proc.terminate()
        proc.wait(30)
    assert got["single"] == (30, 30)
    acked, messages = got["edge"]
    assert acked == 30 and messages <= 15
    acked, messages = got["flush"]
    assert acked == 30 and messages <= 12


def test_comparing_two_decoders_at_one_rate_alternates_them_and_prints_medians(capsys):
    import json
    from pathlib import Path

    load = load_benchmark("load")
    calls: list[str] = []
    cpu = {"this": iter([100.0, 120.0, 110.0]), "base": iter([200.0, 180.0, 190.0])}

    def measure(code: Path, rate: float) -> dict:
        calls.append(code.name)
        python = next(cpu[code.name])
        return {"frames_per_s": 20 * rate, "latency_p50_s": 0.01, "latency_p99_s": python / 1e3, "lost_frames": 0,
                "duplicate_windows": 0, "decoder_cpu_us_per_frame": {"main": 150.0, "python": python},
                "load_generator_cpu_us_per_frame": 80.0, "messages_sent": 1}

    codes = {"this": Path("this"), "baseline base": Path("base")}
    assert load.compare_at_rate(measure, codes, 170.0, 3) == 0
    assert calls == ["this", "base", "base", "this", "this", "base"]  # the order alternates run for run
    report = json.loads(capsys.readouterr().out)
    assert report["this"]["median_decoder_cpu_us_per_frame"] == {"main": 150.0, "python": 110.0}
    assert report["baseline base"]["median_decoder_cpu_us_per_frame"]["python"] == 190.0
    assert report["this"]["median"]["frames_per_s"] == 3400.0
    assert len(report["this"]["runs"]) == 3 and "messages_sent" not in report["this"]["runs"][0]
