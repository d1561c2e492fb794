"""Ack pacing and held-together messages: a fast node gets one cumulative Ack per interval, a
slow one an Ack per message at once; messages taken together are held in one step and a bad
one still leaves the frames before it held. Real grpc.aio decoder on loopback."""
from __future__ import annotations

import asyncio
import time

import grpc

from ndsc.bundle import load_bundle
from ndsc.wire import FrameData, crc32, pack_batch, pb, pb_grpc
from tests.serving.conftest import Subscription, labels, raw_uplink, running_decoder


def _header(bundle, group: str, node: str = "raw") -> pb.UplinkMessage:
    info = bundle.sources[0]
    return pb.UplinkMessage(header=pb.StreamHeader(
        group=group, node_id=node, source_index=0, bundle_id=bundle.bundle_id,
        input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=1))


def _one_frame(payload: bytes, seq: int, corrupt: bool = False) -> pb.UplinkMessage:
    crc = crc32(payload) ^ (1 if corrupt else 0)
    frame = FrameData(seq, seq - 1, int(time.time() * 1e6), crc, payload)
    return pb.UplinkMessage(batch=pack_batch([frame]))


def test_a_fast_node_gets_one_cumulative_ack_per_interval_and_everything_acked(gaussian_bundle, gaussian_eval):
    bundle = load_bundle(gaussian_bundle)
    payload = gaussian_eval["payloads"][0][0]
    n = 60

    async def scenario():
        async with running_decoder(gaussian_bundle, ack_interval=0.25) as (server, address, registry):
            t0 = time.monotonic()
            acks, code, _ = await raw_uplink(address, [_header(bundle, "fast")]
                                             + [_one_frame(payload, s) for s in range(1, n + 1)])
            return acks, code, time.monotonic() - t0, registry

    acks, code, elapsed, registry = asyncio.run(scenario())
    assert code == grpc.StatusCode.OK
    assert acks[0] == 0 and acks[-1] == n  # the header's resume point, then everything, cumulatively
    assert acks == sorted(acks)
    # one Ack per 0.25 s at most after the header's (+1: the stream's end is answered at once)
    assert len(acks) - 1 <= elapsed / 0.25 + 2 < n / 4
    assert registry.get_sample_value("ndsc_frames_total", labels("fast", node="raw", status="accepted")) == n


def test_a_slow_node_gets_each_ack_at_once(gaussian_bundle, gaussian_eval):
    """Messages further apart than the interval are each answered without waiting."""
    bundle = load_bundle(gaussian_bundle)
    payload = gaussian_eval["payloads"][0][0]

    async def scenario():
        async with running_decoder(gaussian_bundle, ack_interval=0.05) as (server, address, registry):
            async with grpc.aio.insecure_channel(address) as channel:
                call = pb_grpc.FusionDecoderStub(channel).Uplink()
                await call.write(_header(bundle, "slow"))
                assert (await call.read()).last_seq == 0
                waits = []
                for seq in range(1, 6):
                    await asyncio.sleep(0.1)  # twice the interval
                    t = time.monotonic()
                    await call.write(_one_frame(payload, seq))
                    ack = await call.read()
                    waits.append((ack.last_seq, time.monotonic() - t))
                await call.done_writing()
                return waits

    waits = asyncio.run(scenario())
    assert [seq for seq, _ in waits] == [1, 2, 3, 4, 5]
    assert all(wait < 0.05 for _, wait in waits), waits  # never held back by the pacing


def test_a_node_holding_an_ack_finds_its_frames_counted(gaussian_bundle, gaussian_eval):
    """A stream's counts reach Prometheus once per Ack (not per message), always before the Ack:
    whoever reads the metrics after an Ack sees every frame it acknowledges, and bytes with them."""
    bundle = load_bundle(gaussian_bundle)
    payload = gaussian_eval["payloads"][0][0]

    async def scenario():
        async with running_decoder(gaussian_bundle, ack_interval=0.2) as (server, address, registry):
            counted = []
            async with grpc.aio.insecure_channel(address) as channel:
                call = pb_grpc.FusionDecoderStub(channel).Uplink()
                await call.write(_header(bundle, "counted"))
                assert (await call.read()).last_seq == 0
                for seq in range(1, 13):  # 12 messages in ~0.24 s: paced, so several per Ack
                    await call.write(_one_frame(payload, seq))
                    await asyncio.sleep(0.02)
                acked = 0
                while acked < 12:
                    acked = (await call.read()).last_seq
                    counted.append((acked, registry.get_sample_value(
                        "ndsc_frames_total", labels("counted", node="raw", status="accepted")), registry.get_sample_value(
                        "ndsc_uplink_accepted_payload_bytes_total", {"group": "counted", "source": "0"})))
                await call.done_writing()
            return counted

    counted = asyncio.run(scenario())
    assert 1 <= len(counted) < 12 and counted[-1][0] == 12
    for acked, frames, nbytes in counted:
        assert frames == acked and nbytes == acked * len(payload)


def test_messages_taken_together_hold_the_frames_before_a_bad_one(gaussian_bundle, gaussian_eval):
    """Four messages sent at once (read ahead, held in one step); the third is corrupt: the stream is
    refused with DATA_LOSS and a reconnect resumes after the second (its frames were held)."""
    bundle = load_bundle(gaussian_bundle)
    payload = gaussian_eval["payloads"][0][0]

    async def scenario():
        async with running_decoder(gaussian_bundle, ack_interval=0.25) as (server, address, registry):
            first = await raw_uplink(address, [_header(bundle, "mixed")] + [
                _one_frame(payload, s, corrupt=s == 3) for s in range(1, 5)])
            again = await raw_uplink(address, [_header(bundle, "mixed")])
            return first, again, registry

    first, again, registry = asyncio.run(scenario())
    assert first[1] == grpc.StatusCode.DATA_LOSS and "seq 3" in first[2]
    assert again[0] == [2]
    assert registry.get_sample_value("ndsc_frames_total", labels("mixed", node="raw", status="accepted")) == 2


def test_frames_reach_the_aligner_while_their_ack_waits(gaussian_bundle, gaussian_eval):
    """Acks paced at 2 s: a window whose frames arrive while both streams wait to ack is still
    reconstructed at once (pacing delays Acks, never decoding)."""
    bundle = load_bundle(gaussian_bundle)
    row = gaussian_eval["payloads"][0]

    def header(source: int) -> pb.UplinkMessage:
        info = bundle.sources[source]
        return pb.UplinkMessage(header=pb.StreamHeader(
            group="paced", node_id=f"n{source}", source_index=source, bundle_id=bundle.bundle_id,
            input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=1))

    def frame(source: int, window: int) -> pb.UplinkMessage:
        p = row[source]
        return pb.UplinkMessage(batch=pack_batch([FrameData(window + 1, window, int(time.time() * 1e6), crc32(p), p)]))

    async def scenario():
        async with running_decoder(gaussian_bundle, ack_interval=2.0) as (server, address, registry):
            sub = Subscription(address, include_samples=False, batches=True)
            await sub.wait_started(registry)
            async with grpc.aio.insecure_channel(address) as channel:
                calls = [pb_grpc.FusionDecoderStub(channel).Uplink() for _ in range(2)]
                for source, call in enumerate(calls):
                    await call.write(header(source))
                    await call.read()
                for source, call in enumerate(calls):  # window 0: taken at once, then each stream waits to ack
                    await call.write(frame(source, 0))
                await sub.wait_for(1)
                t = time.monotonic()
                for source, call in enumerate(calls):  # window 1 arrives while both Acks wait
                    await call.write(frame(source, 1))
                await sub.wait_for(2)
                latency = time.monotonic() - t
                acks = [(await call.read()).last_seq for call in calls]
                for call in calls:
                    await call.done_writing()
            return latency, acks, [r.window for r in sub.items]

    latency, acks, windows = asyncio.run(scenario())
    assert windows == [0, 1] and acks == [2, 2]
    assert latency < 1.0  # not held back until the 2 s Ack


def test_messages_that_arrive_together_share_one_journal_commit(gaussian_bundle, gaussian_eval, tmp_path):
    """With a state directory, frames are durable before their Ack; messages that queue up while a
    commit runs are committed together, so a burst costs far fewer commits than messages."""
    bundle = load_bundle(gaussian_bundle)
    payload = gaussian_eval["payloads"][0][0]
    n = 200

    async def scenario():
        async with running_decoder(gaussian_bundle, state_dir=str(tmp_path)) as (server, address, registry):
            acks, code, _ = await raw_uplink(address, [_header(bundle, "burst")]
                                             + [_one_frame(payload, s) for s in range(1, n + 1)])
            commits = registry.get_sample_value("ndsc_journal_commit_seconds_count", {"kind": "frames"})
            return acks, code, commits

    acks, code, commits = asyncio.run(scenario())
    assert code == grpc.StatusCode.OK and acks[-1] == n
    assert 1 <= commits < n / 2, commits
