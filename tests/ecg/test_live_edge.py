"""Live lead streams into real edge nodes, end to end on loopback.

TCP: four real EdgeNodes read `tcp:` sources served by sender threads over real sockets
and stream to a real grpc.aio fusion decoder; the reconstructions equal the offline
evaluation of the same int16 samples. One sender slips in a block with the wrong
channel count: that node skips (and counts) one window, the decoder estimates it.
stdin: `ndsc ecg-send … | ndsc edge --source stdin:#…` as real processes.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from ndsc.sources.stream import encode_block
from tests.conftest import REPO
from tests.serving.conftest import Subscription, edge_node, running_decoder, x_hat_by_window

GAIN = 1000.0


@pytest.fixture(scope="module")
def record_windows_int16(ecg_bundle):
    """The pydicom record as the bundle's nodes see it, via int16 at 1 µV: (n, 4, 3, 1024) mV."""
    from ndsc.bundle import load_bundle
    from training.ecg_eval import record_windows

    bundle = load_bundle(ecg_bundle[0])
    leads = [l for s in bundle.sources for l in s.channel_names]
    w = record_windows("pydicom", leads, 3, 500.0, 1024)
    return (np.rint(w * GAIN) / GAIN).astype(np.float32), leads


def _serve(signal_mv: np.ndarray, bad_block_at: int | None = None) -> int:
    """A device on loopback: serves one connection with blocks of 250 frames; returns its port."""
    server = socket.create_server(("127.0.0.1", 0))

    def run():
        conn, _ = server.accept()
        with conn:
            for k, lo in enumerate(range(0, signal_mv.shape[1], 250)):
                block = signal_mv[:, lo:lo + 250]
                if k == bad_block_at:
                    block = block[:2]  # a 2-lead block where 3 leads belong: wrong channel count
                conn.sendall(encode_block(block, GAIN))
        server.close()

    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1]


def test_tcp_streams_feed_live_edge_nodes_into_the_joint_decoder(ecg_bundle, record_windows_int16):
    from ndsc.sources.ecg import read_record
    from training.evaluate import evaluate_bundle

    bundle_path, _ = ecg_bundle
    windows, leads = record_windows_int16
    rec = read_record("pydicom").select(leads).resample(500.0)
    groups = [leads[i:i + 3] for i in range(0, 12, 3)]
    # Node 3's device sends 2 leads for samples 1250..1499, inside window 1 (1024..2047).
    ports = [_serve(rec.signal[3 * i:3 * i + 3], bad_block_at=5 if i == 3 else None) for i in range(4)]
    specs = [f"tcp:127.0.0.1:{p}#fs=500,gain={GAIN:g},framing=block,leads={','.join(g)}"
             for p, g in zip(ports, groups)]

    async def scenario():
        async with running_decoder(bundle_path, deadline=1.0) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            nodes = [edge_node(bundle_path, i, address, source=specs[i]) for i in range(4)]
            counts = await asyncio.gather(*(n.run() for n in nodes))
            await sub.wait_for(len(windows))  # the aligner's deadline releases window 1 without node 3
        return counts, await sub.finish(), nodes

    counts, items, nodes = asyncio.run(scenario())
    n = len(windows)
    assert counts == [n] * 4
    assert sorted(r.window for r in items) == list(range(n))  # every window decoded once
    assert nodes[3].metrics.skipped("bad_window")._value.get() == 1
    assert all(node.metrics.skipped("bad_window")._value.get() == 0 for node in nodes[:3])

    offline = evaluate_bundle(bundle_path, windows=windows)
    by_window = x_hat_by_window(items)
    for r in items:
        if r.window == 1:
            assert list(r.present) == [True, True, True, False]  # node 3 estimated from the others
            continue
        assert list(r.present) == [True] * 4
        assert list(r.payload_bytes) == [len(p) for p in offline["payloads"][r.window]]
        np.testing.assert_allclose(by_window[r.window], offline["x_hat"][r.window], rtol=0, atol=1e-4)
    for i in range(3):  # nodes 0-2 are undisturbed: every window's bytes equal the offline coder's
        assert nodes[i].metrics.payload_bytes._value.get() == sum(len(row[i]) for row in offline["payloads"])


def test_stdin_stream_feeds_an_edge_process(ecg_bundle, record_windows_int16):
    from training.evaluate import evaluate_bundle

    bundle_path, _ = ecg_bundle
    windows, leads = record_windows_int16
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    async def scenario():
        async with running_decoder(bundle_path, deadline=0.5) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            send = subprocess.Popen([sys.executable, "-m", "ndsc", "ecg-send", "pydicom", "--leads", "V1,V2,V3",
                                     "--fast"], stdout=subprocess.PIPE, cwd=REPO, env=env)
            edge = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ndsc", "--log-level", "WARNING", "edge", "--bundle", str(bundle_path),
                "--source-index", "2", "--source", "stdin:#fs=500,gain=1000,leads=V1,V2,V3", "--decoder", address,
                "--fast", "--audit-every", "0", "--metrics-port", "-1",
                stdin=send.stdout, stderr=asyncio.subprocess.PIPE, cwd=REPO, env=env)
            send.stdout.close()
            _, err = await asyncio.wait_for(edge.communicate(), timeout=120)
            assert edge.returncode == 0, err.decode()
            assert send.wait(timeout=30) == 0
            await sub.wait_for(len(windows))  # the aligner's deadline releases the windows
        return await sub.finish(), registry

    items, registry = asyncio.run(scenario())
    offline = evaluate_bundle(bundle_path, windows=windows)
    assert sorted(r.window for r in items) == list(range(len(windows)))
    for r in items:
        assert list(r.present) == [False, False, True, False]
        assert r.payload_bytes[2] == len(offline["payloads"][r.window][2])
    samples = len(windows) * 3 * 1024
    coded = sum(len(row[2]) for row in offline["payloads"])
    assert registry.get_sample_value("ndsc_bits_per_sample", {"group": "default", "source": "2"}) == \
        pytest.approx(8 * coded / samples)


def test_demo_on_a_real_record_shows_uplink_vs_raw_and_prdn_per_lead(pydicom_wfdb, tmp_path):
    import re

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "ndsc", "demo", "--ecg", str(pydicom_wfdb), "--duration", "7",
                          "--work-dir", str(tmp_path)], capture_output=True, text=True, timeout=150, cwd=REPO, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped 5 processes cleanly" in out.stdout
    totals = out.stdout.split("=== run totals", 1)[1]
    rates = re.findall(r"^node(\d)\s+\S+\s+\d+\s+([\d.]+)\s+24\.0\s", totals, re.M)  # raw: 3 leads × 500 Hz × 16
    # node 1 (aVR, aVL, aVF) may send empty payloads: the decoder derives its leads from I and II
    assert [int(n) for n, _ in rates] == [0, 1, 2, 3] and all(float(k) > 0 for n, k in rates if n != "1")
    prdn = dict(re.findall(r"(\w+) ([\d.]+)%", totals.split("PRDN per lead", 1)[1]))
    assert list(prdn) == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert all(0 < float(v) < 100 for v in prdn.values())
    assert (tmp_path / "decoder.log").is_file()  # --work-dir keeps the logs
