"""Binning live on loopback: real gRPC, real onnxruntime, real bytes; live equals offline."""
from __future__ import annotations

import asyncio
import zlib

import grpc
import numpy as np
import pytest

from ndsc.bundle import load_bundle
from ndsc.wire import pb, pb_grpc
from tests.binning.conftest import test_windows
from tests.serving.conftest import Subscription, edge_node, labels, running_decoder, x_hat_by_window
from tests.conftest import reconstruction_atol


def _stream(bundle_path, timeout: float = 60.0):
    """Two real edge nodes stream the bundle's test windows to a real decoder; returns what both ends saw."""

    async def scenario():
        async with running_decoder(bundle_path, deadline=5.0) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            nodes = [edge_node(bundle_path, i, address, source="bundle") for i in range(2)]
            counts = await asyncio.wait_for(asyncio.gather(*(n.run() for n in nodes)), timeout)
        return counts, await sub.finish(), registry, nodes

    return asyncio.run(scenario())


def _check_live_equals_offline(bundle_path, counts, items, registry, nodes):
    from training.binning import measure_offline

    start, windows = test_windows(bundle_path)
    offline = measure_offline(bundle_path, windows)
    n = len(windows)
    assert counts == [n, n]
    assert sorted(r.window for r in items) == list(range(start, start + n))  # every window once, none undecoded
    by_window = x_hat_by_window(items)
    for r in items:
        assert list(r.present) == [True, True]
        np.testing.assert_allclose(by_window[r.window], offline["x_hat"][r.window - start], rtol=0,
                                   atol=reconstruction_atol(1e-6))
    for i in range(2):  # the rate: every byte that crossed the wire, initial and requested, equals offline
        offline_bits = sum(row["bits"][i] for row in offline["windows"])
        assert 8 * registry.get_sample_value("ndsc_uplink_payload_bytes_total", labels(node=f"node{i}", source=i)) \
            == offline_bits
        assert 8 * nodes[i].metrics.payload_bytes._value.get() == offline_bits
    requests = sum(row["requests"][1] for row in offline["windows"])
    sent = sum(registry.get_sample_value("ndsc_syndrome_requests_total", labels(source=1, kind=k)) or 0
               for k in ("more", "direct"))
    assert sent == requests
    return offline


def test_feedback_round_trip_live_equals_offline(binning_bundle):
    counts, items, registry, nodes = _stream(binning_bundle)
    offline = _check_live_equals_offline(binning_bundle, counts, items, registry, nodes)
    assert offline["requests_per_window"] > 0  # the initial blocks alone did not decode: feedback did
    n = len(items)
    assert registry.get_sample_value("ndsc_syndrome_windows_total", labels(source=1, outcome="decoded")) == n
    assert registry.get_sample_value("ndsc_bp_iterations_total", labels(source=1)) > 0
    assert registry.get_sample_value("ndsc_syndrome_bits_total", labels(source=1, kind="requested")) > 0
    assert nodes[1].syndrome.settled  # the edge forgot every window once the decoder settled them


def test_the_sq_syndrome_method_is_a_servable_bundle_live_equals_offline(sq_syndrome_bundle):
    b = load_bundle(sq_syndrome_bundle)
    assert [s.coding for s in b.sources] == ["direct", "syndrome"]
    counts, items, registry, nodes = _stream(sq_syndrome_bundle)
    offline = _check_live_equals_offline(sq_syndrome_bundle, counts, items, registry, nodes)
    assert offline["wrong_windows"] == 0
    # binning pays: the syndrome source sends fewer bits than its own prior would need for the same symbols
    from edge_encoder.encoder import EdgeEncoder

    spec, coder, enc = b.sources[1].binning, b.sources[1].coder(), EdgeEncoder(b, 1)
    direct = sum(8 * len(coder.encode(spec.symbols_of(spec.indices(enc.symbols(x[1]))).reshape(-1, 512)))
                 for x in test_windows(sq_syndrome_bundle)[1])
    assert sum(r["bits"][1] for r in offline["windows"]) < direct


def test_window_failing_past_the_bound_falls_back_and_is_decoded(fallback_bundle):
    counts, items, registry, nodes = _stream(fallback_bundle)
    offline = _check_live_equals_offline(fallback_bundle, counts, items, registry, nodes)
    n = len(items)
    assert all(row["requests"][1] == 1 for row in offline["windows"])  # the one request is the fallback
    assert registry.get_sample_value("ndsc_syndrome_windows_total", labels(source=1, outcome="fallback")) == n
    assert registry.get_sample_value("ndsc_syndrome_requests_total", labels(source=1, kind="direct")) == n
    assert registry.get_sample_value("ndsc_syndrome_bits_total", labels(source=1, kind="direct")) > 0


def _header(bundle, source: int, node: str, group: str = "forge") -> pb.UplinkMessage:
    info = bundle.sources[source]
    return pb.UplinkMessage(header=pb.StreamHeader(
        group=group, node_id=node, source_index=source, bundle_id=bundle.bundle_id,
        input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=7))


def _frame(payload: bytes, window: int = 1) -> pb.UplinkMessage:
    import time

    return pb.UplinkMessage(batch=pb.FrameBatch(first_seq=1, first_window=window,
                                                first_capture_us=int(time.time() * 1e6),
                                                frames=[pb.Frame(crc32=zlib.crc32(payload), payload=payload)]))


async def _refusal(address: str, messages: list[pb.UplinkMessage]) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.FusionDecoderStub(channel).Uplink(iter(messages))
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_forged_syndromes_get_a_precise_status_and_leave_other_groups_alone(binning_bundle):
    bundle = load_bundle(binning_bundle)
    spec = bundle.sources[1].binning
    good = bytes(spec.payload_bytes)

    async def scenario():
        async with running_decoder(binning_bundle, deadline=5.0) as (server, address, registry):
            short = await _refusal(address, [_header(bundle, 1, "short"), _frame(good[:-1])])
            long = await _refusal(address, [_header(bundle, 1, "long", "forge2"), _frame(good + b"\x01")])
            block = pb.SyndromeBlock(window=1, plane=1, first_bit=0, end_bit=8, bits=b"\x01", crc32=zlib.crc32(b"\x01"))
            unasked = await _refusal(address, [_header(bundle, 1, "unasked", "forge3"),
                                               pb.UplinkMessage(syndrome=pb.SyndromeReply(blocks=[block]))])
            on_direct = await _refusal(address, [_header(bundle, 0, "direct", "forge4"),
                                                 pb.UplinkMessage(syndrome=pb.SyndromeReply(blocks=[block]))])
            # meanwhile a real group streams and decodes every window
            sub = Subscription(address, group="default")
            await sub.wait_started(registry)
            nodes = [edge_node(binning_bundle, i, address, source="bundle") for i in range(2)]
            counts = await asyncio.wait_for(asyncio.gather(*(n.run() for n in nodes)), 60)
        return short, long, unasked, on_direct, counts, await sub.finish(), registry

    short, long, unasked, on_direct, counts, items, registry = asyncio.run(scenario())
    assert short[0] == grpc.StatusCode.INVALID_ARGUMENT and "syndrome payload" in short[1]
    assert long[0] == grpc.StatusCode.INVALID_ARGUMENT and "syndrome payload" in long[1]
    assert unasked[0] == grpc.StatusCode.INVALID_ARGUMENT and "answers no pending request" in unasked[1]
    assert on_direct[0] == grpc.StatusCode.INVALID_ARGUMENT and "direct-coded source" in on_direct[1]
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "bad_syndrome"}) == 2
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "unrequested_syndrome"}) == 2
    assert len(items) == counts[0] and all(list(r.present) == [True, True] for r in items)


@pytest.mark.parametrize("source", [0])
def test_old_direct_only_edge_streams_to_the_new_decoder(gaussian_bundle, source):
    """A direct-only bundle's edges (which never read Ack.requests) stream as before: no request, every window."""
    async def scenario():
        async with running_decoder(gaussian_bundle, deadline=5.0) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            nodes = [edge_node(gaussian_bundle, i, address, source="bundle", max_windows=5) for i in range(2)]
            counts = await asyncio.wait_for(asyncio.gather(*(n.run() for n in nodes)), 60)
        return counts, await sub.finish(), registry

    counts, items, registry = asyncio.run(scenario())
    assert counts == [5, 5] and len(items) == 5 and all(list(r.present) == [True, True] for r in items)
    assert registry.get_sample_value("ndsc_syndrome_requests_total", labels(source=source, kind="more")) is None


async def _one_syndrome_window(channel, address: str, bundle_path, node: str, payload: bytes, window: int):
    """Source 1's stream (group ``default``) opened by hand, with one frame of ``payload``, and source 0's
    same window from a real edge node, so the decoder attempts it; returns the open call."""
    call = pb_grpc.FusionDecoderStub(channel).Uplink()
    await call.write(_header(load_bundle(bundle_path), 1, node, "default"))
    await call.read()
    await call.write(_frame(payload, window=window))
    direct = edge_node(bundle_path, 0, address, source="bundle", max_windows=1)
    await asyncio.wait_for(direct.run(), 30)
    return call


def test_an_edge_that_never_answers_gets_its_source_estimated_never_an_undecoded_window(binning_bundle):
    """Source 1 sends a too-short initial block and goes silent: the window is still reconstructed,
    that source marked estimated, and the timeout counted."""
    from edge_encoder.encoder import EdgeEncoder

    bundle = load_bundle(binning_bundle)
    spec = bundle.sources[1].binning
    start, windows = test_windows(binning_bundle)
    payload = spec.initial_payload(spec.planes_of(EdgeEncoder(bundle, 1).symbols(windows[0][1])))

    async def scenario():
        async with running_decoder(binning_bundle, deadline=0.5) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            async with grpc.aio.insecure_channel(address) as channel:
                call = await _one_syndrome_window(channel, address, binning_bundle, "silent", payload, start)
                acks = [await asyncio.wait_for(call.read(), 10) for _ in range(2)]  # its frame's Ack, then a request
                await sub.wait_for(1, timeout=30)
                call.cancel()
        return acks, await sub.finish(), registry

    acks, items, registry = asyncio.run(scenario())
    assert any(a.requests and a.requests[0].window == start for a in acks)  # BP failed: more bits were asked for
    assert [r.window for r in items] == [start] and list(items[0].present) == [True, False]
    assert registry.get_sample_value("ndsc_syndrome_windows_total", labels(source=1, outcome="timeout")) == 1


def test_acks_to_a_direct_source_carry_no_feedback(binning_bundle):
    """What an edge that predates binning reads: Acks with last_seq only (the new fields stay at their defaults)."""
    from edge_encoder.encoder import EdgeEncoder

    bundle = load_bundle(binning_bundle)
    start, windows = test_windows(binning_bundle)
    payload = EdgeEncoder(bundle, 0).encode(windows[0][0])

    async def scenario():
        async with running_decoder(binning_bundle, deadline=0.5) as (server, address, registry):
            async with grpc.aio.insecure_channel(address) as channel:
                call = pb_grpc.FusionDecoderStub(channel).Uplink()
                await call.write(_header(bundle, 0, "old", "old"))
                first = await call.read()
                await call.write(_frame(payload, window=start))
                second = await call.read()
                await call.done_writing()
                info = await pb_grpc.FusionDecoderStub(channel).GetModelInfo(pb.ModelInfoRequest())
                return first, second, info

    first, second, info = asyncio.run(scenario())
    assert (first.last_seq, second.last_seq) == (0, 1)
    assert not first.requests and not second.requests and first.settled_below == second.settled_below == 0
    assert [s.coding for s in info.sources] == ["direct", "syndrome"]


def test_a_bad_answer_is_refused_precisely_and_the_request_comes_again_on_the_next_stream(binning_bundle):
    """An answer with a wrong crc32: DATA_LOSS (the edge reconnects); the next stream's first Ack
    carries the pending request again; an answer of the wrong length: INVALID_ARGUMENT bad_syndrome."""
    from edge_encoder.encoder import EdgeEncoder

    bundle = load_bundle(binning_bundle)
    spec = bundle.sources[1].binning
    start, windows = test_windows(binning_bundle)
    payload = spec.initial_payload(spec.planes_of(EdgeEncoder(bundle, 1).symbols(windows[0][1])))

    async def request_of(call) -> pb.SyndromeRequest:
        while True:
            ack = await asyncio.wait_for(call.read(), 10)
            if ack.requests:
                return ack.requests[0]

    async def scenario():
        async with running_decoder(binning_bundle, deadline=5.0) as (server, address, registry):
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.FusionDecoderStub(channel)
                call = stub.Uplink()
                await call.write(_header(bundle, 1, "flaky", "default"))
                await call.read()
                await call.write(_frame(payload, window=start))
                direct = edge_node(binning_bundle, 0, address, source="bundle", max_windows=1)
                await asyncio.wait_for(direct.run(), 30)
                r = await request_of(call)
                bits = bytes((r.end_bit - r.first_bit + 7) // 8)
                await call.write(pb.UplinkMessage(syndrome=pb.SyndromeReply(blocks=[pb.SyndromeBlock(
                    window=r.window, plane=r.plane, first_bit=r.first_bit, end_bit=r.end_bit, bits=bits,
                    crc32=zlib.crc32(bits) ^ 1)])))
                with pytest.raises(grpc.aio.AioRpcError) as crc:
                    await request_of(call)
                again = stub.Uplink()
                await again.write(_header(bundle, 1, "flaky", "default"))  # same incarnation: a reconnect
                first = await asyncio.wait_for(again.read(), 10)
                wrong = bits + b"\x00"
                await again.write(pb.UplinkMessage(syndrome=pb.SyndromeReply(blocks=[pb.SyndromeBlock(
                    window=r.window, plane=r.plane, first_bit=r.first_bit, end_bit=r.end_bit, bits=wrong,
                    crc32=zlib.crc32(wrong))])))
                with pytest.raises(grpc.aio.AioRpcError) as length:
                    await request_of(again)
        return r, crc.value, first, length.value, registry

    r, crc, first, length, registry = asyncio.run(scenario())
    assert crc.code() == grpc.StatusCode.DATA_LOSS and "crc32" in crc.details()
    assert list(first.requests) == [r] and first.last_seq == 1
    assert length.code() == grpc.StatusCode.INVALID_ARGUMENT and "bytes for" in length.details()
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "crc_mismatch"}) == 1
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "bad_syndrome"}) == 1


def test_a_forged_plane_check_is_refused_with_bad_syndrome_and_the_window_never_output_wrong(fallback_bundle):
    """A payload whose plane check was altered: the decoder refuses every BP word (it cannot tell a forged
    check from a wrong word), asks for the direct payload (max_requests 0), finds the edge's own symbols
    contradict the check, refuses that answer (INVALID_ARGUMENT bad_syndrome) and estimates the source."""
    from edge_encoder.binning import SyndromeResponder
    from edge_encoder.encoder import EdgeEncoder

    bundle = load_bundle(fallback_bundle)
    info = bundle.sources[1]
    spec = info.binning
    assert spec.check_bits and [p.mode for p in spec.planes if p.mode != "skip"][-1] == "syndrome"
    start, windows = test_windows(fallback_bundle)
    responder = SyndromeResponder(info)
    payload = bytearray(responder.encode(start, EdgeEncoder(bundle, 1).symbols(windows[0][1])))
    last = spec.initial_bits - 1  # the last check bit of the last syndrome plane
    payload[last // 8] ^= 0x80 >> (last % 8)

    async def scenario():
        async with running_decoder(fallback_bundle, deadline=0.5) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            async with grpc.aio.insecure_channel(address) as channel:
                call = await _one_syndrome_window(channel, address, fallback_bundle, "forged", bytes(payload), start)
                while True:
                    ack = await asyncio.wait_for(call.read(), 10)
                    if ack.requests:
                        break
                await call.write(pb.UplinkMessage(syndrome=pb.SyndromeReply(blocks=[responder.answer(ack.requests[0])])))
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await asyncio.wait_for(call.read(), 10)
                await sub.wait_for(1, timeout=30)
        return ack.requests[0], refused.value, await sub.finish(), registry

    request, refused, items, registry = asyncio.run(scenario())
    assert request.direct and request.window == start
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "contradicts the check" in refused.details()
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "bad_syndrome"}) == 1
    assert [r.window for r in items] == [start] and list(items[0].present) == [True, False]  # estimated, not wrong
    assert registry.get_sample_value("ndsc_syndrome_windows_total", labels(source=1, outcome="timeout")) == 1
