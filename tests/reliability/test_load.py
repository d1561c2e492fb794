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
