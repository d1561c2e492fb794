"""Binning through the command line: `ndsc decoder` and two `ndsc edge` processes, one syndrome-coded."""
from __future__ import annotations

import signal

from app.demo import scrape
from tests.binning.conftest import test_windows
from tests.serving.test_processes import _ready, _spawn


def test_ndsc_decoder_and_edges_serve_a_binning_bundle_with_feedback(binning_bundle):
    from training.binning import measure_offline

    bundle = str(binning_bundle)
    _, windows = test_windows(binning_bundle)
    decoder = _spawn(["decoder", "--bundle", bundle, "--listen", "127.0.0.1:0", "--metrics-port", "0",
                      "--deadline", "10"])
    try:
        ready = _ready(decoder, "NDSC_DECODER_READY")
        edges = [_spawn(["edge", "--bundle", bundle, "--source-index", str(i), "--decoder", ready["grpc"],
                         "--metrics-port", "-1", "--fast"]) for i in range(2)]
        rcs = [e.wait(timeout=120) for e in edges]
        logs = [e.stderr.read() for e in edges]
        metrics = scrape(ready["metrics"])
        decoder.send_signal(signal.SIGTERM)
        assert decoder.wait(timeout=30) == 0
    finally:
        if decoder.poll() is None:
            decoder.kill()
            decoder.wait()
    assert rcs == [0, 0], logs

    def value(name, **labels):
        key = tuple(sorted({"group": "default", **labels}.items()))
        return metrics.get((name, key), 0.0)

    offline = measure_offline(binning_bundle, windows)
    assert value("ndsc_reconstructions_total") == len(windows)
    assert value("ndsc_syndrome_windows_total", source="1", outcome="decoded") == len(windows)
    assert value("ndsc_syndrome_requests_total", source="1", kind="more") == sum(r["requests"][1]
                                                                                 for r in offline["windows"])
    for i in (0, 1):
        assert 8 * value("ndsc_uplink_payload_bytes_total", node=f"node{i}", source=str(i)) == sum(
            r["bits"][i] for r in offline["windows"])
