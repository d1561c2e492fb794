"""Processes refuse a taken port with one line, and an edge stops on the first signal, even while reconnecting."""
from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from ndsc.bundle import load_bundle
from tests.conftest import REPO


def listening_socket(reuseport: bool) -> socket.socket:
    """A socket listening on a free 127.0.0.1 port; with ``reuseport`` as a gRPC server's socket is."""
    s = socket.socket()
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ndsc(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ndsc", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def refused_with_one_line(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "READY" not in out, err[-2000:]
    # a logged error (" ERROR ") or the CLI's one-line usage error ("ndsc decoder: error: …")
    errors = [line for line in err.splitlines() if " ERROR " in line or ": error: " in line]
    assert len(errors) == 1, err[-2000:]
    return errors[0]


def test_a_second_decoder_on_a_taken_grpc_port_refuses_to_start(gaussian_bundle):
    from fusion_decoder.server import DecoderServer

    bundle = load_bundle(gaussian_bundle)

    async def scenario():
        first = DecoderServer(bundle, "127.0.0.1:0", registry=CollectorRegistry())
        port = await first.start()
        try:
            second = DecoderServer(bundle, f"127.0.0.1:{port}", registry=CollectorRegistry())
            with pytest.raises(OSError, match="in use"):
                await second.start()
        finally:
            await first.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("taken", ["grpc", "metrics"])
def test_the_decoder_refuses_to_start_with_one_line_when_its_port_is_taken(gaussian_bundle, taken):
    holder = listening_socket(reuseport=taken == "grpc")  # reuseport: what another decoder would hold
    port = holder.getsockname()[1]
    try:
        listen = f"127.0.0.1:{port}" if taken == "grpc" else "127.0.0.1:0"
        metrics = str(port) if taken == "metrics" else "-1"
        line = refused_with_one_line(ndsc("decoder", "--bundle", str(gaussian_bundle), "--listen", listen,
                                          "--metrics-port", metrics))
    finally:
        holder.close()
    assert ("--listen" if taken == "grpc" else "--metrics-port") in line and "in use" in line.lower(), line


def test_the_edge_refuses_to_start_with_one_line_when_its_metrics_port_is_taken(gaussian_bundle):
    holder = listening_socket(reuseport=False)
    try:
        line = refused_with_one_line(ndsc("edge", "--bundle", str(gaussian_bundle), "--decoder",
                                          f"127.0.0.1:{free_port()}", "--metrics-port",
                                          str(holder.getsockname()[1])))
    finally:
        holder.close()
    assert "--metrics-port" in line and "in use" in line.lower(), line


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_edge_reconnecting_to_a_dead_decoder_stops_on_the_first_signal(gaussian_bundle, signum):
    proc = ndsc("edge", "--bundle", str(gaussian_bundle), "--decoder", f"127.0.0.1:{free_port()}",
                "--metrics-port", "-1", "--fast", "--source", "gaussian:n=2,rho=0.9,seed=0,start=0,count=100000",
                "--backoff-initial", "0.2", "--backoff-max", "0.5", "--drain-timeout", "1")
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    seen = []
    try:
        end = time.monotonic() + 120
        while not any("retrying" in line for line in seen):  # the node is in its reconnect loop
            assert time.monotonic() < end and proc.poll() is None, seen[-20:]
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        sent = time.monotonic()
        proc.send_signal(signum)  # once
        code = proc.wait(timeout=30)
        stopped_after = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)  # stderr closed with the process: every line is queued
    while not lines.empty():
        seen.append(lines.get())
    assert code == 1  # stopped with frames the dead decoder never acknowledged
    assert stopped_after < 10, stopped_after  # drain timeout 1 s, plus process teardown
    assert any("unacknowledged" in line for line in seen), seen[-5:]
