"""Short runs of the CPU benchmarks behind the decoder's batching choices and its p99 caveat."""
from __future__ import annotations

import json

import numpy as np

from tests.conftest import load_benchmark


def test_the_synthesis_benchmark_times_both_convolution_paths_and_the_runtimes_pick(tmp_path, capsys):
    import torch

    bench = load_benchmark("synthesis_batch")
    out = tmp_path / "synthesis.json"
    threads = torch.get_num_threads()
    try:  # the benchmark runs torch on one thread, as the decoder does
        assert bench.main(["--bundle", "ecg-synth-quick", "--batches", "1,6", "--repeats", "1",
                           "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = json.loads(out.read_text())["ecg-synth-quick"]
    assert [r["batch"] for r in rows] == [1, 6]
    for r in rows:
        assert all(v > 0 for v in r["us_per_window"].values())
        assert r["native_over_onednn"] > 0
    assert "native/oneDNN" in capsys.readouterr().out


def test_the_gil_benchmark_times_eager_and_traced_synthesis_alone_and_beside_busy_python(tmp_path, capsys):
    import sys

    import torch

    bench = load_benchmark("synthesis_gil")
    out = tmp_path / "gil.json"
    threads, switch = torch.get_num_threads(), sys.getswitchinterval()
    try:
        assert bench.main(["--bundle", "ecg-synth-quick", "--batches", "2", "--repeats", "2",
                           "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert sys.getswitchinterval() == switch  # the decoder's interval only while it measures
    report = json.loads(out.read_text())
    assert report["switch_interval_s"] == 0.0005
    (row,) = report["ecg-synth-quick"]
    assert row["batch"] == 2
    assert set(row["ms"]) == {"eager", "graph", "eager_busy", "graph_busy"}
    assert all(v > 0 for v in row["ms"].values())
    assert row["eager_over_graph_busy"] > 0
    assert "eager/graph busy" in capsys.readouterr().out


def test_the_cpu_steadiness_probe_reports_its_workload_against_its_own_median(tmp_path):
    bench = load_benchmark("cpu_steadiness")
    out = tmp_path / "steadiness.json"
    assert bench.main(["--duration", "0.3", "--every", "0.005", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["workload_calls"] > 5
    ms = report["workload_cpu_ms"]
    assert 0 < ms["p50"] <= ms["p99"] <= ms["max"]
    assert report["p99_over_p50"] >= 1.0
    assert 0 <= report["slow_fraction"] <= 1
    assert report["slow_stretches"] == len(report["slow_stretch_ms_largest"]) or report["slow_stretches"] > 10
    assert 0.0 <= report["windows_later_than_50ms_at_least"] <= 1.0


def test_slow_stretches_merge_nearby_slow_calls_and_bound_the_late_windows():
    bench = load_benchmark("cpu_steadiness")
    # (start s, CPU ms) every 12 ms; calls 2–4 slow (one stretch), call 8 slow alone
    cpu = [2.0, 2.0, 9.0, 20.0, 9.0, 2.0, 2.0, 2.0, 30.0, 2.0]
    calls = np.array([(0.012 * k, c) for k, c in enumerate(cpu)])
    stretches = bench.slow_stretches(calls, median=2.0, every=0.01)
    assert stretches == [36.0, 12.0]  # 24 → 60 ms, then 96 → 108 ms
    assert bench.late_fraction_bound([120.0, 30.0], duration=1.0, target_ms=50.0) == 0.07


def test_the_fair_queue_benchmark_times_both_queues_in_the_same_run(tmp_path, capsys):
    bench = load_benchmark("fair_queue")
    out = tmp_path / "fair.json"
    assert bench.main(["--windows", "2000", "--repeats", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["us_per_window"]) == {"fifo", "fair"} and all(v > 0 for v in report["us_per_window"].values())
    assert report["fair_over_fifo"] > 0
    assert "fair/FIFO" in capsys.readouterr().out


def test_the_heap_benchmark_times_malloc_defaults_and_the_kept_heap_in_child_processes(tmp_path, capsys):
    import platform

    bench = load_benchmark("decoder_heap")
    out = tmp_path / "heap.json"
    assert bench.main(["--batches", "1,8", "--repeats", "1", "--calls", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["heap_kept"] is (platform.libc_ver()[0] == "glibc")
    for mode in ("default", "kept"):
        assert set(report["ms_per_batch"][mode]) == {"1", "8"} and all(v > 0 for v in report["ms_per_batch"][mode].values())
        assert report["peak_rss_mib"][mode] > 0
    assert all(r > 0 for r in report["default_over_kept"].values())
    assert "default/kept" in capsys.readouterr().out
