"""A decoder process SIGKILLed mid-stream and restarted on the same state directory."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import grpc

from ndsc.wire import pb, pb_grpc
from tests.conftest import REPO
from tests.serving.conftest import edge_node

N_WINDOWS = 160
SPEC = f"gaussian:n=2,rho=0.9,seed=0,start=0,count={N_WINDOWS},rate=3200"  # 64 samples: 20 ms per window


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_decoder(bundle, port, state_dir, deadline: float = 10):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ndsc", "decoder", "--bundle", str(bundle), "--listen", f"127.0.0.1:{port}",
         "--metrics-port", "-1", "--deadline", str(deadline), "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.startswith("NDSC_DECODER_READY"):
            return proc
        if not line and proc.poll() is not None:
            raise AssertionError(f"decoder exited {proc.returncode}")
    raise AssertionError("decoder not ready")


class Collector:
    def __init__(self, address):
        self.channel = grpc.aio.insecure_channel(address)
        self.items: list[pb.Reconstruction] = []
        self.call = pb_grpc.FusionDecoderStub(self.channel).Subscribe(pb.SubscribeRequest())
        self.task = asyncio.create_task(self._run())

    async def _run(self):
        try:
            async for r in self.call:
                self.items.append(r)
        except grpc.aio.AioRpcError:
            pass  # the decoder was killed


def test_guarantee_no_window_lost_or_decoded_twice_across_decoder_restart(gaussian_bundle, tmp_path):
    port, state = _free_port(), tmp_path / "state"
    address = f"127.0.0.1:{port}"

    async def scenario():
        first = await asyncio.to_thread(_start_decoder, gaussian_bundle, port, state)
        sub1 = Collector(address)
        nodes = [edge_node(gaussian_bundle, i, address, source=SPEC, fast=False, backoff_initial=0.05,
                           backoff_max=0.5) for i in range(2)]
        streaming = asyncio.gather(*(n.run() for n in nodes))
        while len(sub1.items) < 30:  # mid-stream: some windows decoded, most still to come
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        await sub1.task
        killed_at = len(sub1.items)
        second = await asyncio.to_thread(_start_decoder, gaussian_bundle, port, state)
        try:
            sub2 = Collector(address)
            counts = await asyncio.wait_for(streaming, 240)
            second.send_signal(signal.SIGTERM)  # drains held windows to subscribers, then exits
            await asyncio.to_thread(second.wait, 60)
            await asyncio.wait_for(sub2.task, 30)
        finally:
            if second.poll() is None:
                second.kill()
        for s in (sub1, sub2):
            await s.channel.close()
        return counts, killed_at, sub1.items, sub2.items, nodes

    counts, killed_at, items1, items2, nodes = asyncio.run(scenario())
    assert counts == [N_WINDOWS, N_WINDOWS]
    assert killed_at < N_WINDOWS - 20  # the kill really was mid-stream
    assert all(n.metrics.reconnects._value.get() >= 1 for n in nodes)  # the nodes reconnected and resumed
    db = sqlite3.connect(state / "journal.sqlite")
    decoded = db.execute("SELECT window, present, run FROM decoded ORDER BY window").fetchall()
    runs = {run for _, _, run in decoded}
    # every window decoded exactly once (the journal's primary key), none lost, all complete
    assert [w for w, _, _ in decoded] == list(range(N_WINDOWS))
    assert all(present == "11" for _, present, _ in decoded)
    assert len(runs) == 2  # both decoder processes decoded part of the stream
    assert db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 0  # nothing left held
    # subscribers saw each window at most once, and only journaled windows
    seen = [r.window for r in items1 + items2]
    assert len(seen) == len(set(seen))
    assert set(seen) <= set(range(N_WINDOWS))
    assert items2  # the second decoder published to its subscriber (what it decoded before that is journaled)


def test_guarantee_a_send_buffer_overflow_is_counted_on_both_ends_never_silent(gaussian_bundle):
    from tests.serving.conftest import running_decoder

    port = _free_port()
    address = f"127.0.0.1:{port}"

    async def scenario():
        # the decoder is down while the node reads 40 windows into a 5-frame buffer
        node = edge_node(gaussian_bundle, 0, address, source="gaussian:n=2,rho=0.9,seed=0,start=0,count=40",
                         buffer_frames=5, backoff_initial=0.05, backoff_max=0.2)
        run = asyncio.create_task(node.run())
        while node.windows_read < 40:
            await asyncio.sleep(0.02)
        async with running_decoder(gaussian_bundle, listen=address, deadline=0.3) as (server, _, registry):
            await asyncio.wait_for(run, 60)
        return node, registry

    # running_decoder binds 127.0.0.1:0 unless told otherwise
    node, registry = asyncio.run(scenario())
    dropped = node.metrics.dropped_frames._value.get()
    assert dropped == 35
    lab = {"group": "default", "node": "node0"}
    assert registry.get_sample_value("ndsc_frames_total", {**lab, "status": "lost"}) == dropped
    assert registry.get_sample_value("ndsc_frames_total", {**lab, "status": "accepted"}) == 5
    assert registry.get_sample_value("ndsc_reconstructions_total", {"group": "default"}) == 5
