"""Every kind of bad input gets a precise status and a counted reason, while good nodes keep streaming."""
from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from ndsc.bundle import load_bundle
from ndsc.wire import crc32
from tests.reliability.conftest import batch, encoded_windows, header
from tests.serving.conftest import raw_uplink
from tests.serving.conftest import Subscription, edge_node, running_decoder

MAX_BYTES = 64 * 1024


def test_guarantee_bad_input_gets_a_precise_status_and_a_counted_reason_and_others_keep_streaming(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)
    windows = encoded_windows(gaussian_bundle, 4)
    p0 = [w[1][0] for w in windows]  # source 0's real payloads

    # (name, messages, raw bytes?, expected code, reason counted in ndsc_streams_rejected_total)
    cases = [
        ("malformed", [b"\x0a\xff\xff\xff\xff\x0f"], True, grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
        ("malformed_later", [header(bundle, group="g-mal").SerializeToString(), b"\x12\x05\x08"], True,
         grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
        ("oversized", [header(bundle, group="g-big"), batch([b"\x01" * (MAX_BYTES + 10)])], False,
         grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized"),
        ("batch_first", [batch([p0[0]])], False, grpc.StatusCode.INVALID_ARGUMENT, "bad_header"),
        ("wrong_shape", [header(bundle, input_shape=(1, 7))], False, grpc.StatusCode.INVALID_ARGUMENT,
         "shape_mismatch"),
        ("unknown_source", [header(bundle, source=9, group="g-src")], False, grpc.StatusCode.INVALID_ARGUMENT,
         "unknown_source"),
        ("wrong_bundle", [header(bundle, bundle_id="sha256:" + "0" * 64)], False,
         grpc.StatusCode.FAILED_PRECONDITION, "bundle_mismatch"),
        ("bad_crc", [header(bundle, group="g-crc"), batch(p0[:2], crcs=[crc32(p0[0]), crc32(p0[1]) ^ 1])], False,
         grpc.StatusCode.DATA_LOSS, "crc_mismatch"),
        ("seq_far_ahead", [header(bundle, group="g-seq"), batch(p0[:1], first_seq=10**9)], False,
         grpc.StatusCode.OUT_OF_RANGE, "seq_out_of_range"),
        ("seq_replayed", [header(bundle, group="g-rep"), batch(p0[:2]), batch(p0[1:2], first_seq=2, first_window=1)],
         False, grpc.StatusCode.INVALID_ARGUMENT, "seq_replayed"),
        ("seq_zero", [header(bundle, group="g-zero"), batch(p0[:1], first_seq=0)], False,
         grpc.StatusCode.INVALID_ARGUMENT, "bad_seq"),
        ("window_backwards", [header(bundle, group="g-win"), batch(p0[:1], first_window=5),
                              batch(p0[1:2], first_seq=2, first_window=3)], False,
         grpc.StatusCode.INVALID_ARGUMENT, "window_order"),
        # valid crc, but the payload decodes to too few / too many symbols
        ("undecodable_trailing", [header(bundle, group="g-dec"), batch([p0[0], p0[1] + b"\x01\x02\x03\x04" * 8])],
         False, grpc.StatusCode.INVALID_ARGUMENT, "undecodable"),
        ("undecodable_garbage", [header(bundle, group="g-dec2"), batch([bytes(range(256)) * 4])], False,
         grpc.StatusCode.INVALID_ARGUMENT, "undecodable"),
    ]

    async def scenario():
        async with running_decoder(gaussian_bundle, max_message_bytes=MAX_BYTES, deadline=1.0,
                                   max_seq_gap=10_000) as (server, address, registry):
            sub = Subscription(address, include_samples=False, group="default")
            await sub.wait_started(registry)
            nodes = [edge_node(gaussian_bundle, i, address, source="gaussian:n=2,rho=0.9,seed=0,start=0,count=40")
                     for i in range(2)]
            streaming = asyncio.gather(*(n.run() for n in nodes))
            results = {}
            for name, messages, raw, _, _ in cases:
                results[name] = await raw_uplink(address, messages, raw=raw)
            counts = await streaming
        return counts, results, await sub.finish(), registry

    counts, results, items, registry = asyncio.run(scenario())
    for name, _, _, code, reason in cases:
        assert results[name][1] == code, (name, results[name])
        assert results[name][2], name  # a message says what was wrong
    reasons = {}
    for _, _, _, _, reason in cases:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in reasons.items():
        assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": reason}) == n, reason
    assert registry.get_sample_value("ndsc_bad_requests_total", {"rpc": "Uplink", "reason": "malformed"}) == 2
    assert registry.get_sample_value("ndsc_bad_requests_total", {"rpc": "Uplink", "reason": "oversized"}) == 1
    # frames before the bad one in a batch are held, and acknowledged on the next header
    assert results["undecodable_trailing"][0] == [0]
    assert registry.get_sample_value("ndsc_frames_total", {"group": "g-dec", "node": "node0",
                                                           "status": "accepted"}) == 1
    assert registry.get_sample_value("ndsc_frames_total", {"group": "g-dec", "node": "node0",
                                                           "status": "undecodable"}) == 1
    # the good nodes were never disturbed: every window decoded once, both sources present
    assert counts == [40, 40]
    assert len(items) == 40 and len({r.window for r in items}) == 40
    assert all(list(r.present) == [True, True] for r in items)


def test_guarantee_bad_windows_at_the_edge_are_logged_counted_and_skipped(gaussian_bundle, caplog):
    from ndsc.sources import register_source
    from ndsc.sources.base import Window
    from ndsc.sources.synthetic import GaussianSources

    class Flawed:
        channel_names = ("s",)
        window_period = 0.0

        def __init__(self, i, shape):
            self.i, self.shape = i, shape

        def windows(self):
            gen = GaussianSources(2, 0.9, channels=self.shape[0], samples=self.shape[1])
            for k in range(8):
                x = gen.window(k)[self.i]
                if k == 1:
                    x[0, 3] = np.nan
                elif k == 3:
                    x[0, 0] = np.inf
                elif k == 5:
                    x[0, 1] = -np.inf
                elif k == 6:
                    x = x[:, : x.shape[1] // 2]  # truncated
                yield Window(k, x, 0.0)

    register_source("flawed-rel")(lambda args, i, shape: Flawed(i, shape))

    async def scenario():
        async with running_decoder(gaussian_bundle, deadline=1.0) as (server, address, registry):
            sub = Subscription(address, include_samples=False)
            await sub.wait_started(registry)
            nodes = [edge_node(gaussian_bundle, i, address, source="flawed-rel:") for i in range(2)]
            await asyncio.gather(*(n.run() for n in nodes))
        return await sub.finish(), nodes

    from ndsc.sources import base

    caplog.set_level(logging.WARNING, logger="ndsc.edge")
    try:
        items, nodes = asyncio.run(scenario())
    finally:
        base.SOURCES.remove("flawed-rel")
    assert sorted(r.window for r in items) == [0, 2, 4, 7]
    for node in nodes:
        assert node.metrics.skipped("bad_window")._value.get() == 4
    text = caplog.text
    assert text.count("NaN or infinite") == 6 and text.count("window shape") == 2
    assert "window 6 skipped (bad_window)" in text
