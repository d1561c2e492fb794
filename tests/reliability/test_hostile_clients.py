"""Hostile clients: each attack gets a precise status and a counted reason, and never reaches another group.

Real grpc.aio decoders on 127.0.0.1, real edge nodes and raw uplinks; one test per attack.
"""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from prometheus_client import CollectorRegistry

from ndsc.bundle import load_bundle
from ndsc.wire import FrameData, crc32, pack_batch, pb, pb_grpc
from ndsc.wire.limits import MAX_WINDOW_INDEX
from tests.reliability.conftest import batch, encoded_windows, header
from tests.serving.conftest import Subscription, edge_node, raw_uplink, running_decoder

SPEC6 = "gaussian:n=2,rho=0.9,seed=0,start=0,count=6"


def rejected(registry, reason: str) -> float:
    return registry.get_sample_value("ndsc_streams_rejected_total", {"reason": reason}) or 0


class HeldUplink:
    """An Uplink stream that sends ``messages`` and then stays open, silent, until ``close``."""

    def __init__(self, address: str, messages):
        self.channel = grpc.aio.insecure_channel(address)
        self._release = asyncio.Event()

        async def requests():
            for m in messages:
                yield m
            await self._release.wait()

        self.call = pb_grpc.FusionDecoderStub(self.channel).Uplink(requests())

    async def ack(self) -> int:
        return (await asyncio.wait_for(self.call.read(), 10)).last_seq

    async def close(self) -> tuple[grpc.StatusCode, str]:
        """Half-close; the status the stream ended with."""
        self._release.set()
        code, details = await asyncio.wait_for(self.call.code(), 10), await self.call.details()
        await self.channel.close()
        return code, details


async def good_group(bundle_path, address, group: str = "good") -> list[int]:
    """Two real edge nodes of ``group`` streaming 6 windows each; returns windows read per node."""
    nodes = [edge_node(bundle_path, i, address, group=group, source=SPEC6) for i in range(2)]
    return await asyncio.gather(*(n.run() for n in nodes))


def assert_good_group_whole(items, group: str = "good") -> None:
    mine = [r for r in items if r.group == group]
    assert sorted(r.window for r in mine) == list(range(6))
    assert all(list(r.present) == [True, True] for r in mine)


def test_a_window_index_beyond_2_53_is_refused_out_of_range_and_other_groups_keep_every_window(
        gaussian_bundle, tmp_path):
    bundle = load_bundle(gaussian_bundle)
    p0 = [row[0] for _, row in encoded_windows(gaussian_bundle, 2)]
    top = 2**64 - 2
    # the Node.js attack: a uint64 first_window near 2^64 plus a window_skip that overflows it
    overflow = pb.UplinkMessage(batch=pb.FrameBatch(first_seq=1, first_window=top,
                                                    first_capture_us=int(time.time() * 1e6)))
    overflow.batch.frames.add(crc32=crc32(p0[0]), payload=p0[0])
    overflow.batch.frames.add(window_skip=5, crc32=crc32(p0[1]), payload=p0[1])

    async def scenario():
        async with running_decoder(gaussian_bundle, deadline=0.5, state_dir=str(tmp_path)) as (_, address, registry):
            sub = Subscription(address, include_samples=False)
            await sub.wait_started(registry)
            streaming = asyncio.create_task(good_group(gaussian_bundle, address))
            results = [await raw_uplink(address, [header(bundle, group="evil"), overflow]),
                       await raw_uplink(address, [header(bundle, group="evil2"), batch(p0[:1], first_window=2**53)]),
                       await raw_uplink(address, [header(bundle, group="edge-of-range"),
                                                  batch(p0[:1], first_window=MAX_WINDOW_INDEX)])]
            await streaming
        return results, await sub.finish(), registry

    (evil, evil2, edge_of_range), items, registry = asyncio.run(scenario())
    for acks, code, details in (evil, evil2):
        assert code == grpc.StatusCode.OUT_OF_RANGE and "2^53-1" in details, (code, details)
        assert acks == [0]
    assert rejected(registry, "window_out_of_range") == 2
    # the last index of the range is served: held, journaled, decoded (other source estimated), published
    assert edge_of_range[1] == grpc.StatusCode.OK and edge_of_range[0] == [0, 1]
    assert [(r.window, list(r.present)) for r in items if r.group == "edge-of-range"] == [
        (MAX_WINDOW_INDEX, [True, False])]
    assert_good_group_whole(items)
    assert not registry.get_sample_value("ndsc_window_failures_total", {"stage": "publish"})


def test_group_and_node_names_outside_64_safe_characters_are_refused_and_leave_no_trace(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)
    bad_groups = ["g" * 65, "g" * (1 << 20), "a b", "line\nbreak", "ümlaut", "-leading-dash", "x/y"]
    bad_nodes = ["n" * 65, "n\x00", "{node}"]
    ok = ("G" + "0123456789._:-" * 5)[:64]  # exactly 64 characters, every allowed kind

    async def scenario():
        async with running_decoder(gaussian_bundle) as (_, address, registry):
            results = [await raw_uplink(address, [header(bundle, group=g)]) for g in bad_groups]
            results += [await raw_uplink(address, [header(bundle, node=n)]) for n in bad_nodes]
            accepted = await raw_uplink(address, [header(bundle, group=ok, node=ok)])
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.FusionDecoderStub(channel)
                info = await stub.GetModelInfo(pb.ModelInfoRequest())
                with pytest.raises(grpc.aio.AioRpcError) as subscribe:
                    async for _ in stub.Subscribe(pb.SubscribeRequest(group="g" * 65)):
                        pass
        return results, accepted, info, registry, subscribe.value.code()

    results, accepted, info, registry, subscribe = asyncio.run(scenario())
    assert subscribe == grpc.StatusCode.INVALID_ARGUMENT
    assert registry.get_sample_value("ndsc_bad_requests_total", {"rpc": "Subscribe", "reason": "bad_group"}) == 1
    for acks, code, details in results:
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "[A-Za-z0-9._:-]" in details, (code, details[:200])
        assert acks == [] and len(details) < 400  # the refusal never echoes a huge name back
    assert rejected(registry, "bad_group") == len(bad_groups)
    assert rejected(registry, "bad_node_id") == len(bad_nodes)
    assert accepted[1] == grpc.StatusCode.OK
    assert list(info.groups) == [ok]


def test_the_decoder_refuses_groups_and_streams_beyond_its_limits_and_evicts_idle_groups(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)

    async def scenario():
        async with running_decoder(gaussian_bundle, max_groups=2, max_streams=3,
                                   group_idle=0.2) as (server, address, registry):
            held = [HeldUplink(address, [header(bundle, group=g, source=s)]) for g, s in (("g1", 0), ("g2", 0))]
            acks = [await h.ack() for h in held]
            third_group = await raw_uplink(address, [header(bundle, group="g3")])
            held.append(HeldUplink(address, [header(bundle, group="g1", source=1)]))
            acks.append(await held[-1].ack())
            fourth_stream = await raw_uplink(address, [header(bundle, group="g2", source=1)])
            ends = [await h.close() for h in held]
            # idle groups go once their streams ended and group_idle passed: wait for the eviction
            deadline = time.monotonic() + 10
            while (registry.get_sample_value("ndsc_groups_evicted_total") or 0) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            after = await raw_uplink(address, [header(bundle, group="g3")])
            groups = len(server.pipeline.aligners)
        return acks, third_group, fourth_stream, ends, after, groups, registry

    acks, third_group, fourth_stream, ends, after, groups, registry = asyncio.run(scenario())
    assert acks == [0, 0, 0]
    assert third_group[1] == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 2 groups" in third_group[2]
    assert fourth_stream[1] == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 3 uplink streams" in fourth_stream[2]
    assert all(code == grpc.StatusCode.OK for code, _ in ends)
    assert rejected(registry, "too_many_groups") == 1 and rejected(registry, "too_many_streams") == 1
    assert registry.get_sample_value("ndsc_groups_evicted_total") == 2
    assert after[:2] == ([0], grpc.StatusCode.OK)  # g3 is admitted once g1 and g2 were evicted
    assert groups == 1


def test_a_silent_stream_is_ended_and_its_source_goes_to_a_replacement_node(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)
    p0 = [row[0] for _, row in encoded_windows(gaussian_bundle, 12)]

    async def scenario():
        async with running_decoder(gaussian_bundle, stream_idle=0.5) as (_, address, registry):
            silent = HeldUplink(address, [header(bundle, node="silent")])
            first = await silent.ack()
            taken = await raw_uplink(address, [header(bundle, node="replacement")])
            # the idle timer ends the silent stream by itself (close() only half-closes after it)
            code = await asyncio.wait_for(silent.call.code(), 10)
            details = await silent.call.details()
            await silent.close()
            replaced = await raw_uplink(address, [header(bundle, node="replacement"), batch(p0[:1])])

            # a stream that keeps talking (every 0.05 s, longer than the idle timeout in all) is not cut
            async def talking():
                yield header(bundle, node="talker", group="busy")
                for k in range(12):
                    await asyncio.sleep(0.05)
                    yield batch(p0[k:k + 1], first_seq=k + 1, first_window=k)

            async with grpc.aio.insecure_channel(address) as channel:
                call = pb_grpc.FusionDecoderStub(channel).Uplink(talking())
                talker = [a.last_seq async for a in call]
        return first, taken, code, details, replaced, talker, registry

    first, taken, code, details, replaced, talker, registry = asyncio.run(scenario())
    assert first == 0
    assert taken[1] == grpc.StatusCode.ALREADY_EXISTS  # while the silent node still held it
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "released" in details
    assert rejected(registry, "idle_timeout") == 1
    assert replaced[1] == grpc.StatusCode.OK and replaced[0] == [0, 1]
    assert talker == list(range(13))


def test_incarnation_0_is_refused_so_a_restarted_node_is_never_taken_for_duplicates(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)

    async def scenario():
        async with running_decoder(gaussian_bundle) as (_, address, registry):
            return await raw_uplink(address, [header(bundle, incarnation=0)]), registry

    (acks, code, details), registry = asyncio.run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "incarnation 0" in details and acks == []
    assert rejected(registry, "bad_incarnation") == 1


def test_an_empty_chunk_is_refused_and_the_frames_before_it_are_held(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)
    p0 = [row[0] for _, row in encoded_windows(gaussian_bundle, 2)]
    now = int(time.time() * 1e6)
    frames = [FrameData(1, 0, now, crc32(p0[0]), p0[0]),
              # a whole payload of 0 bytes is a valid window (docs/bitstream.md: all symbols at index 0)
              FrameData(2, 1, now, crc32(b""), b""),
              FrameData(3, 2, now, crc32(p0[1][:2]), p0[1][:2], 0, 2),
              FrameData(4, 2, now, crc32(b""), b"", 1, 2)]

    async def scenario():
        async with running_decoder(gaussian_bundle) as (_, address, registry):
            refused = await raw_uplink(address, [header(bundle), pb.UplinkMessage(batch=pack_batch(frames))])
            resumed = await raw_uplink(address, [header(bundle)])
        return refused, resumed, registry

    (acks, code, details), resumed, registry = asyncio.run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty chunk" in details and acks == [0]
    assert rejected(registry, "empty_chunk") == 1
    assert resumed[0] == [3]  # windows 0, 1 and the first chunk of 2 were held; the edge resends from seq 4
    assert registry.get_sample_value("ndsc_frames_total", {"group": "default", "node": "node0",
                                                           "status": "accepted"}) == 3


def test_capture_times_outside_the_sane_window_are_counted_and_never_reach_the_latency_histogram(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)
    rows = [row for _, row in encoded_windows(gaussian_bundle, 2)]
    now = int(time.time() * 1e6)
    # source 0: window 0 at −1e15 µs (the attack), window 1 a day in the future; source 1 on time
    evil = [FrameData(1, 0, -10**15, crc32(rows[0][0]), rows[0][0]),
            FrameData(2, 1, now + 86_400 * 10**6, crc32(rows[1][0]), rows[1][0])]

    async def scenario():
        async with running_decoder(gaussian_bundle) as (_, address, registry):
            sub = Subscription(address, include_samples=False)
            await sub.wait_started(registry)
            r0 = await raw_uplink(address, [header(bundle, source=0), pb.UplinkMessage(batch=pack_batch(evil))])
            r1 = await raw_uplink(address, [header(bundle, source=1), batch([rows[0][1], rows[1][1]],
                                                                            capture_us=now)])
        return r0, r1, await sub.finish(), registry

    r0, r1, items, registry = asyncio.run(scenario())
    assert r0[1] == r1[1] == grpc.StatusCode.OK
    assert registry.get_sample_value("ndsc_frames_total", {"group": "default", "node": "node0",
                                                           "status": "capture_time_out_of_range"}) == 2
    assert sorted(r.window for r in items) == [0, 1]
    for r in items:
        assert list(r.present) == [True, True]  # decoded all the same
        assert r.capture_time[0] == 0.0 and r.capture_time[1] == pytest.approx((now + 1000 * r.window) / 1e6)
    # only source 1's two on-time frames are latencies, and they are small
    assert registry.get_sample_value("ndsc_capture_to_reconstruction_seconds_count", {"group": "default"}) == 2
    assert registry.get_sample_value("ndsc_capture_to_reconstruction_seconds_sum", {"group": "default"}) < 60


@pytest.mark.parametrize("stage", ["publish", "journal"])
def test_a_window_that_fails_to_publish_or_journal_is_counted_and_never_takes_other_windows_with_it(
        gaussian_bundle, tmp_path, stage):
    """Below the servicer's range checks (defence in depth): the real pipeline, fed one window
    whose index protobuf (2^64) or SQLite (2^63) cannot hold, in the middle of a good batch."""
    from fusion_decoder.journal import Journal
    from fusion_decoder.metrics import DecoderMetrics
    from fusion_decoder.runtime import JointDecoderRuntime
    from fusion_decoder.pipeline import DecodePipeline

    rows = [row for _, row in encoded_windows(gaussian_bundle, 4)]
    poison = 2**64 if stage == "publish" else 2**63
    registry = CollectorRegistry()

    async def scenario():
        journal = Journal(tmp_path if stage == "journal" else None)
        pipeline = DecodePipeline(JointDecoderRuntime(load_bundle(gaussian_bundle)), DecoderMetrics(registry),
                                  deadline=30.0, max_batch=64, journal=journal)
        pipeline.start()
        queue = pipeline.broadcaster.add("", include_samples=True)
        now = int(time.time() * 1e6)
        for k, row in enumerate(rows):  # good windows around the poisoned one, all queued as one batch
            for group, window in (("good", k), ("other", k)) if k != 2 else (("good", k), ("evil", poison)):
                for i, p in enumerate(row):
                    await pipeline.add(group, window, i, p, now)
        await pipeline.drain()
        await pipeline.close()
        out = []
        while (item := queue.get_nowait()) is not None:
            out.extend(pb.Reconstruction.FromString(m) for m in item)
        return out

    items = asyncio.run(scenario())
    published = sorted((r.group, r.window) for r in items)
    assert published == sorted([("good", k) for k in range(4)] + [("other", k) for k in (0, 1, 3)])
    assert registry.get_sample_value("ndsc_window_failures_total", {"stage": stage}) == 1
    assert registry.get_sample_value("ndsc_decode_batch_size_count") == 1  # one batch: the poison was inside it


def test_a_connection_whose_peer_stops_answering_pings_is_closed_by_keepalive(gaussian_bundle):
    """A raw HTTP/2 peer that completes the handshake, then never answers: the decoder's keepalive
    pings it and, unanswered, closes the connection (a vanished edge cannot hold resources)."""
    import socket

    def frames_until_closed(sock: socket.socket, limit: float) -> list[int]:
        kinds, buf, end = [], b"", time.monotonic() + limit
        while time.monotonic() < end:
            sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return kinds + [-1]
            if not chunk:
                return kinds + [-1]  # closed
            buf += chunk
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                n, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
                if kind == 4 and not flags & 1:  # the server's SETTINGS: acknowledge them, then go silent
                    sock.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
                kinds.append(kind)
                buf = buf[9 + n:]
        return kinds

    async def scenario():
        async with running_decoder(gaussian_bundle, keepalive=0.3) as (_, address, _registry):
            host, port = address.rsplit(":", 1)
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                return await asyncio.get_running_loop().run_in_executor(None, frames_until_closed, sock, 20.0)

    kinds = asyncio.run(scenario())
    assert 6 in kinds, kinds  # PING
    assert kinds[-1] == -1 or kinds[-1] == 7, kinds  # then GOAWAY and/or the connection closed


def test_subscribers_beyond_the_limit_are_refused_counted_and_admitted_once_one_leaves(gaussian_bundle):
    async def until(predicate, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < end
            await asyncio.sleep(0.01)

    async def scenario():
        async with running_decoder(gaussian_bundle, max_subscribers=2) as (server, address, registry):
            broadcaster = server.pipeline.broadcaster
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.FusionDecoderStub(channel)
                held = [stub.Subscribe(pb.SubscribeRequest(group="g")),
                        stub.SubscribeBatches(pb.SubscribeRequest(group=""))]
                await until(lambda: broadcaster.subscribers == 2)
                third = stub.Subscribe(pb.SubscribeRequest(group="g"))
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await third.read()
                held[0].cancel()
                await until(lambda: broadcaster.subscribers == 1)
                admitted = stub.Subscribe(pb.SubscribeRequest(group="g"))
                await until(lambda: broadcaster.subscribers == 2)
                for call in (held[1], admitted):
                    call.cancel()
                counted = registry.get_sample_value(
                    "ndsc_bad_requests_total", {"rpc": "Subscribe", "reason": "too_many_subscribers"})
                return refused.value, counted

    error, counted = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 2 Subscribe streams" in error.details()
    assert counted == 1
