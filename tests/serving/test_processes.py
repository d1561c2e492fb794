"""End to end with real processes: `ndsc decoder` + 4 `ndsc edge` on loopback, scraped by a real Prometheus."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import grpc
import numpy as np
import pytest

from app.demo import scrape
from ndsc.wire import pb, pb_grpc
from tests.conftest import REPO, require_system_tools
from tests.serving.conftest import replay_start, x_hat_by_window


def _spawn(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ndsc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO, **kw)


def _ready(proc, prefix, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return dict(p.split("=", 1) for p in line.split()[1:])
        if not line and proc.poll() is not None:
            raise AssertionError(f"{prefix}: exited {proc.returncode}: {proc.stderr.read()}")
    raise AssertionError(f"no {prefix}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prometheus_query(metrics_url: str, tmp_path, query: str, want: float, timeout: float = 60):
    """Start Debian's prometheus scraping ``metrics_url``; return what its HTTP API answers for ``query``."""
    port = _free_port()
    target = urllib.parse.urlparse(metrics_url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "ndsc-decoder", "static_configs": [{"targets": [target]}]}]}))
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        end, last = time.monotonic() + timeout, None
        while time.monotonic() < end:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    body = json.loads(resp.read())
            except OSError:
                continue
            result = body["data"]["result"]
            if result:
                last = float(result[0]["value"][1])
                if last == want:
                    return last
        return last
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def four_nodes(ecg_synth_bundle, tmp_path_factory):
    """Run the decoder and 4 edge processes to the end of the replay; collect everything observed."""
    bundle = str(ecg_synth_bundle)
    decoder = _spawn(["decoder", "--bundle", bundle, "--listen", "127.0.0.1:0", "--metrics-port", "0",
                      "--deadline", "30"])
    try:
        ready = _ready(decoder, "NDSC_DECODER_READY")
        channel = grpc.insecure_channel(ready["grpc"])
        stream = pb_grpc.FusionDecoderStub(channel).Subscribe(pb.SubscribeRequest(include_samples=True))
        items = []
        reader = threading.Thread(target=lambda: items.extend(stream), daemon=True)
        reader.start()
        while not scrape(ready["metrics"]).get(("ndsc_subscribers", ())):
            time.sleep(0.05)
        edges = [_spawn(["edge", "--bundle", bundle, "--source-index", str(i), "--decoder", ready["grpc"],
                         "--metrics-port", "-1", "--fast", "--audit-every", "4", "--flush-interval", "0.05"])
                 for i in range(4)]
        edge_rcs = [e.wait(timeout=120) for e in edges]
        edge_logs = [e.stderr.read() for e in edges]
        metrics = scrape(ready["metrics"])
        prom = None
        if shutil.which("prometheus"):
            want = sum(v for (name, _), v in metrics.items() if name == "ndsc_uplink_payload_bytes_total")
            prom = (want, _prometheus_query(ready["metrics"], tmp_path_factory.mktemp("prom"),
                                            "sum(ndsc_uplink_payload_bytes_total)", want))
        decoder.send_signal(signal.SIGTERM)
        decoder_rc = decoder.wait(timeout=30)
        reader.join(timeout=10)
        channel.close()
        return {"items": items, "metrics": metrics, "edge_rcs": edge_rcs, "edge_logs": edge_logs,
                "decoder_rc": decoder_rc, "prometheus": prom}
    finally:
        if decoder.poll() is None:
            decoder.kill()
            decoder.wait()


def test_four_edge_processes_reconstruct_every_window_once_as_eval_does(four_nodes, ecg_synth_bundle):
    from training.evaluate import evaluate_bundle

    assert four_nodes["edge_rcs"] == [0, 0, 0, 0], four_nodes["edge_logs"]
    assert four_nodes["decoder_rc"] == 0
    ref = evaluate_bundle(ecg_synth_bundle)
    start, n = replay_start(ecg_synth_bundle), ref["windows"]
    items = four_nodes["items"]
    assert sorted(r.window for r in items) == list(range(start, start + n))
    for window, x_hat in x_hat_by_window(items).items():
        np.testing.assert_allclose(x_hat, ref["x_hat"][window - start], rtol=0, atol=1e-4)
    metrics = four_nodes["metrics"]
    for i in range(4):
        labels = (("group", "default"), ("node", f"node{i}"), ("source", str(i)))
        assert metrics[("ndsc_uplink_payload_bytes_total", labels)] == sum(len(row[i]) for row in ref["payloads"])
        assert metrics[("ndsc_uplink_protocol_bytes_total", labels)] > 0
        assert metrics[("ndsc_audit_windows_total", (("group", "default"), ("source", str(i))))] == len(
            [k for k in range(start, start + n) if k % 4 == 0])


def test_a_real_prometheus_scrapes_the_decoder(four_nodes):
    if four_nodes["prometheus"] is None:
        if require_system_tools():
            pytest.fail("prometheus is not installed (NDSC_REQUIRE_SYSTEM_TOOLS=1)")
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    want, got = four_nodes["prometheus"]
    assert want > 0 and got == want
