"""End to end in one process: real grpc.aio decoder + real edge nodes over loopback sockets."""
from __future__ import annotations

import asyncio
import math

import grpc
import numpy as np
import pytest

from ndsc.bundle import load_bundle
from ndsc.wire import FrameData, crc32, pack_batch, pb
from tests.serving.conftest import (Subscription, edge_node, labels, raw_uplink, replay_start, running_decoder,
                                   x_hat_by_window)
from tests.conftest import reconstruction_atol


def test_two_nodes_reconstruct_every_window_once_as_eval_does(gaussian_bundle, gaussian_eval):
    start = replay_start(gaussian_bundle)

    async def scenario():
        async with running_decoder(gaussian_bundle) as (server, address, registry):
            sub, batched = Subscription(address), Subscription(address, batches=True)
            await sub.wait_started(registry, 2)
            nodes = [edge_node(gaussian_bundle, i, address, audit_every=7) for i in range(2)]
            counts = await asyncio.gather(*(n.run() for n in nodes))
        return counts, await sub.finish(), await batched.finish(), batched.batch_sizes, registry, nodes

    counts, items, in_batches, batch_sizes, registry, nodes = asyncio.run(scenario())
    # SubscribeBatches delivers the same Reconstructions, in the same order, fewer per message
    assert in_batches == items and sum(batch_sizes) == len(items) and len(batch_sizes) <= len(items)
    n_windows = gaussian_eval["windows"]
    assert counts == [n_windows, n_windows]
    windows = [r.window for r in items]
    assert sorted(windows) == list(range(start, start + n_windows))  # every window, exactly once
    by_window = x_hat_by_window(items)
    for r in items:
        k = r.window - start
        assert list(r.present) == [True, True]
        assert list(r.payload_bytes) == [len(p) for p in gaussian_eval["payloads"][k]]
        np.testing.assert_allclose(by_window[r.window], gaussian_eval["x_hat"][k], rtol=0,
                                   atol=reconstruction_atol(1e-5))

    # Prometheus counters equal the bytes that crossed the wire, on both ends.
    for i, node in enumerate(nodes):
        lab = labels(node=f"node{i}", source=i)
        coded = sum(len(row[i]) for row in gaussian_eval["payloads"])
        assert registry.get_sample_value("ndsc_uplink_payload_bytes_total", lab) == coded
        assert node.metrics.payload_bytes._value.get() == coded
        edge_reg = node.metrics.frames._value.get()
        assert edge_reg == n_windows
        assert (registry.get_sample_value("ndsc_uplink_protocol_bytes_total", lab)
                == node.metrics.protocol_bytes._value.get() > 0)
        assert registry.get_sample_value("ndsc_frames_total", labels(node=f"node{i}", status="accepted")) == n_windows
        samples = n_windows * load_bundle(gaussian_bundle).sources[i].samples_per_window
        assert registry.get_sample_value("ndsc_bits_per_sample", labels(source=i)) == pytest.approx(8 * coded / samples)
    assert registry.get_sample_value("ndsc_reconstructions_total", labels()) == n_windows
    assert registry.get_sample_value("ndsc_aligner_windows_total", labels(outcome="complete")) == n_windows
    assert registry.get_sample_value("ndsc_decode_batch_size_count") >= 1
    assert registry.get_sample_value("ndsc_capture_to_reconstruction_seconds_count", labels()) == 2 * n_windows
    # each window's wait in the decode queue is part of each of its frames' capture → reconstruction
    assert registry.get_sample_value("ndsc_decode_queue_seconds_count", labels()) == n_windows
    assert 0 < registry.get_sample_value("ndsc_decode_queue_seconds_sum", labels()) <= registry.get_sample_value(
        "ndsc_capture_to_reconstruction_seconds_sum", labels()) / 2

    # Distortion on audited windows (1 in 7) equals the distortion of those windows in eval.
    x = load_bundle(gaussian_bundle)
    audited = [k for k in range(n_windows) if (start + k) % 7 == 0]
    from training.evaluate import dataset_for_bundle

    test = dataset_for_bundle(x).test
    for i in range(2):
        err = test[audited, i].astype(np.float64) - gaussian_eval["x_hat"][audited, i]
        assert registry.get_sample_value("ndsc_audit_windows_total", labels(source=i)) == len(audited)
        assert registry.get_sample_value("ndsc_audit_rmse", labels(source=i)) == pytest.approx(
            math.sqrt(np.mean(err**2)), rel=1e-4)
        assert registry.get_sample_value("ndsc_audit_bytes_total", labels(node=f"node{i}", source=i)) > 0


def _header(bundle, source=0, group="default", node="raw", bundle_id=None, incarnation=1):
    info = bundle.sources[source]
    return pb.UplinkMessage(header=pb.StreamHeader(
        group=group, node_id=node, source_index=source, bundle_id=bundle_id or bundle.bundle_id,
        input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=incarnation))


def _batch(payloads, first_seq=1, first_window=0, corrupt=None):
    frames = [FrameData(first_seq + j, first_window + j, 1_700_000_000_000_000 + j, crc32(p), p)
              for j, p in enumerate(payloads)]
    if corrupt is not None:
        f = frames[corrupt]
        frames[corrupt] = FrameData(f.seq, f.window, f.capture_us, f.crc32, f.payload[:-1] + bytes([f.payload[-1] ^ 1]))
    return pb.UplinkMessage(batch=pack_batch(frames))




def test_bundle_mismatch_and_corrupt_payload_are_refused_while_others_stream(gaussian_bundle, gaussian_eval):
    bundle = load_bundle(gaussian_bundle)
    good = gaussian_eval["payloads"][0][0]
    n_windows = gaussian_eval["windows"]

    async def scenario():
        async with running_decoder(gaussian_bundle) as (server, address, registry):
            sub = Subscription(address, include_samples=False)
            await sub.wait_started(registry)
            nodes = [edge_node(gaussian_bundle, i, address) for i in range(2)]
            streaming = asyncio.gather(*(n.run() for n in nodes))
            mismatch = await raw_uplink(address, [_header(bundle, bundle_id="sha256:another")])
            corrupt = await raw_uplink(address, [_header(bundle, group="intruder"),
                                                  _batch([good, good, good], corrupt=2)])
            no_header = await raw_uplink(address, [_batch([good])])
            await streaming
        return mismatch, corrupt, no_header, await sub.finish(), registry

    mismatch, corrupt, no_header, items, registry = asyncio.run(scenario())
    assert mismatch[1] == grpc.StatusCode.FAILED_PRECONDITION and "differs" in mismatch[2]
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "bundle_mismatch"}) == 1
    # crc32 mismatch: DATA_LOSS (bytes corrupted in transit; the sender may resend from the ack).
    assert corrupt[1] == grpc.StatusCode.DATA_LOSS and "seq 3" in corrupt[2]
    assert corrupt[0] == [0]
    assert registry.get_sample_value("ndsc_frames_total", labels("intruder", node="raw", status="crc_mismatch")) == 1
    assert registry.get_sample_value("ndsc_frames_total", labels("intruder", node="raw", status="accepted")) == 2
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "crc_mismatch"}) == 1
    assert no_header[1] == grpc.StatusCode.INVALID_ARGUMENT
    # the real nodes were not disturbed: every window of group "default" decoded once, complete
    default = [r for r in items if r.group == "default"]
    assert len(default) == len({r.window for r in default}) == n_windows
    assert all(all(r.present) for r in default)


def test_resume_from_ack_dedups_resent_frames_and_counts_gaps(gaussian_bundle, gaussian_eval):
    bundle = load_bundle(gaussian_bundle)
    rows = gaussian_eval["payloads"]

    async def scenario():
        async with running_decoder(gaussian_bundle, deadline=0.2) as (server, address, registry):
            first = await raw_uplink(address, [_header(bundle), _batch([r[0] for r in rows[:5]])])
            # reconnect: the decoder says it holds seq 5; the node resends 4..8 anyway
            second = await raw_uplink(address, [_header(bundle), _batch([r[0] for r in rows[3:8]], first_seq=4,
                                                                           first_window=3)])
            # a gap (the node's buffer overflowed while away): seq 9..10 lost
            third = await raw_uplink(address, [_header(bundle), _batch([rows[10][0]], first_seq=11,
                                                                          first_window=10)])
            # the node process restarted (new incarnation): its seqs start at 1 again and are new frames
            fourth = await raw_uplink(address, [_header(bundle, incarnation=2),
                                                 _batch([rows[12][0], rows[13][0]], first_window=12)])
        return first, second, third, fourth, registry

    first, second, third, fourth, registry = asyncio.run(scenario())
    assert first[0] == [0, 5] and second[0] == [5, 8] and third[0] == [8, 11] and fourth[0] == [0, 2]
    lab = labels(node="raw")
    assert registry.get_sample_value("ndsc_frames_total", {**lab, "status": "accepted"}) == 11
    assert registry.get_sample_value("ndsc_node_restarts_total", lab) == 1
    assert registry.get_sample_value("ndsc_frames_total", {**lab, "status": "duplicate"}) == 2
    assert registry.get_sample_value("ndsc_frames_total", {**lab, "status": "lost"}) == 2
    # only source 0 ever arrived: windows are released partial at the deadline, source 1 marked missing
    assert registry.get_sample_value("ndsc_aligner_windows_total", labels(outcome="partial")) == 11
    assert registry.get_sample_value("ndsc_aligner_missing_sources_total", labels(source=1)) == 11


class _CuttableProxy:
    """A loopback TCP proxy whose connections the test can cut (a flaky network)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()


def test_edge_reconnects_and_resumes_after_the_connection_is_cut(gaussian_bundle):
    from app.demo import endless_replay

    bundle = load_bundle(gaussian_bundle)
    start, n_windows = replay_start(gaussian_bundle), 80
    spec = endless_replay(bundle) + f",count={n_windows},rate=2000"  # 32 ms per window, in real time

    def accepted(registry, i):
        return registry.get_sample_value("ndsc_frames_total", labels(node=f"node{i}", status="accepted")) or 0

    async def scenario():
        async with running_decoder(gaussian_bundle) as (server, address, registry):
            proxy = _CuttableProxy(int(address.rsplit(":", 1)[1]))
            port = await proxy.start()
            sub = Subscription(address, include_samples=False)
            await sub.wait_started(registry)
            nodes = [edge_node(gaussian_bundle, i, f"127.0.0.1:{port}", source=spec, fast=False,
                               backoff_initial=0.05) for i in range(2)]
            run = asyncio.gather(*(n.run() for n in nodes))
            cuts = 0
            for _ in range(2):  # cut every connection twice, each time once both nodes are streaming
                before = [accepted(registry, i) for i in range(2)]
                while not all(accepted(registry, i) >= before[i] + 3 for i in range(2)) and not run.done():
                    await asyncio.sleep(0.01)
                if not run.done():
                    proxy.cut()
                    cuts += 1
            await run
            await proxy.close()
        return await sub.finish(), registry, nodes, cuts

    items, registry, nodes, cuts = asyncio.run(scenario())
    assert cuts == 2
    assert sorted(r.window for r in items) == list(range(start, start + n_windows))
    assert all(all(r.present) for r in items)
    assert all(n.metrics.reconnects._value.get() >= 2 for n in nodes)
    for i in range(2):
        assert accepted(registry, i) == n_windows  # resent frames were deduplicated, none lost
        assert not registry.get_sample_value("ndsc_frames_total", labels(node=f"node{i}", status="lost"))


def test_bad_windows_are_skipped_and_counted_never_fatal(gaussian_bundle):
    from ndsc.sources import register_source
    from ndsc.sources.base import Window
    from ndsc.sources.synthetic import GaussianSources

    class FlawedSource:
        """Gaussian windows where window 2 has a NaN and window 4 the wrong shape."""

        channel_names = ("s",)
        window_period = 0.0

        def __init__(self, source_index, shape):
            self.source_index, self.shape = source_index, shape

        def windows(self):
            gen = GaussianSources(2, 0.9, channels=self.shape[0], samples=self.shape[1])
            for k in range(6):
                x = gen.window(k)[self.source_index]
                if k == 2:
                    x[0, 0] = np.nan
                if k == 4:
                    x = x[:, :-1]
                yield Window(k, x, 0.0)

    register_source("flawed-test")(lambda args, i, shape: FlawedSource(i, shape))

    async def scenario():
        async with running_decoder(gaussian_bundle) as (server, address, registry):
            sub = Subscription(address, include_samples=False)
            await sub.wait_started(registry)
            nodes = [edge_node(gaussian_bundle, i, address, source="flawed-test:") for i in range(2)]
            await asyncio.gather(*(n.run() for n in nodes))
        return await sub.finish(), nodes

    from ndsc.sources import base

    try:
        items, nodes = asyncio.run(scenario())
    finally:
        base.SOURCES.remove("flawed-test")  # leave the registry as other tests expect it
    assert sorted(r.window for r in items) == [0, 1, 3, 5]
    for node in nodes:
        assert node.metrics.skipped("bad_window")._value.get() == 2
        assert node.metrics.frames._value.get() == 4


def test_edge_with_another_bundle_stops_with_failed_precondition(gaussian_bundle, ecg_synth_bundle):
    from edge_encoder.node import EdgeFatalError

    async def scenario():
        async with running_decoder(ecg_synth_bundle) as (server, address, registry):
            with pytest.raises(EdgeFatalError) as err:
                await edge_node(gaussian_bundle, 0, address, max_windows=3).run()
            return err.value, registry

    error, registry = asyncio.run(scenario())
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "bundle_mismatch"}) == 1


def test_stop_drains_windows_still_waiting_for_a_node(gaussian_bundle, gaussian_eval):
    """Only node 0 streams; with a long deadline its windows wait in the aligner until shutdown drains them."""
    start, n_windows = replay_start(gaussian_bundle), gaussian_eval["windows"]

    async def scenario():
        async with running_decoder(gaussian_bundle, deadline=600.0) as (server, address, registry):
            sub = Subscription(address, include_samples=False)
            await sub.wait_started(registry)
            await edge_node(gaussian_bundle, 0, address).run()
            held = server.pipeline.aligners["default"].pending
        return held, await sub.finish(), registry

    held, items, registry = asyncio.run(scenario())
    assert held == n_windows
    assert sorted(r.window for r in items) == list(range(start, start + n_windows))
    assert all(list(r.present) == [True, False] for r in items)
    assert registry.get_sample_value("ndsc_aligner_windows_total", labels(outcome="partial")) == n_windows


def test_message_size_limit_is_explicit_oversize_payloads_travel_in_chunks(gaussian_bundle, gaussian_eval):
    sizes = [len(row[0]) for row in gaussian_eval["payloads"]]
    # payload bytes a message may carry (max_message_bytes minus the node's 4096-byte headroom):
    # about half of the windows are larger, so they travel as several frames (chunks)
    budget = min(sorted(sizes)[len(sizes) // 2], max(sizes) - 1)

    async def scenario():
        async with running_decoder(gaussian_bundle, deadline=0.2) as (server, address, registry):
            node = edge_node(gaussian_bundle, 0, address, max_message_bytes=4096 + budget, max_batch_frames=64)
            await node.run()
        return node, registry

    node, registry = asyncio.run(scenario())
    big = [s for s in sizes if s > budget]
    assert 0 < len(big) < len(sizes)
    assert node.metrics.chunked_windows._value.get() == len(big)
    frames = sum(-(-s // budget) for s in sizes)
    assert registry.get_sample_value("ndsc_frames_total", labels(node="node0", status="accepted")) == frames
    # every window was reassembled and decoded; no chunk set was left incomplete
    assert registry.get_sample_value("ndsc_reconstructions_total", labels()) == len(sizes)
    assert registry.get_sample_value("ndsc_incomplete_chunk_sets_total", labels(source=0)) is None
    # every message stayed within the byte budget
    assert registry.get_sample_value("ndsc_uplink_payload_bytes_total", labels(node="node0", source=0)) == sum(sizes)
    assert registry.get_sample_value("ndsc_uplink_messages_total", labels(node="node0", source=0)) - 1 >= (
        sum(sizes) / budget)
