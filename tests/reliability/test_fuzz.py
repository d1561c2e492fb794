"""Property-based fuzzing of a live decoder on loopback (hypothesis).

At least 10 000 generated frames (well-formed, corrupted, truncated, replayed, from the
future, for unknown sources, ...) plus raw garbage messages reach one decoder. Between
examples a steady group gets one well-formed window per example; every one of those must
be decoded, and the decoder's threads, tasks and memory must stay bounded.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading

import grpc
from hypothesis import HealthCheck, given, settings, strategies as st
from ndsc.bundle import load_bundle
from app.demo import scrape
from ndsc.wire import FrameData, crc32, pack_batch, pb, pb_grpc
from tests.conftest import REPO
from tests.reliability.conftest import encoded_windows

FRAMES_WANTED = 10_000
MAX_BYTES = 32 * 1024


class LiveDecoder:
    """A real ``ndsc decoder`` process (its memory and threads measured from /proc), scraped over HTTP."""

    def __init__(self, bundle_path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ndsc", "decoder", "--bundle", str(bundle_path), "--listen", "127.0.0.1:0",
             # 1.5 s: the two steady nodes' frames of a window must meet even on a loaded 2-core machine
             "--metrics-port", "0", "--deadline", "1.5", "--max-message-bytes", str(MAX_BYTES),
             "--max-seq-gap", "1000"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            cwd=REPO)
        for line in self.proc.stdout:
            if line.startswith("NDSC_DECODER_READY"):
                ready = dict(p.split("=", 1) for p in line.split()[1:])
                self.address, self.metrics_url = ready["grpc"], ready["metrics"]
                return
        raise AssertionError(f"decoder exited {self.proc.wait()}")

    def status(self) -> tuple[int, int]:
        """(RSS bytes, threads) of the decoder process."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["Threads"])

    def metric(self, name: str, **labels) -> float:
        return sum(v for (n, lab), v in scrape(self.metrics_url).items()
                   if n == name and all(dict(lab).get(k) == x for k, x in labels.items()))

    def close(self):
        alive = self.proc.poll() is None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        assert alive, "the decoder died"


class SteadyNode:
    """A well-formed uplink kept open across examples: one frame per ``send``."""

    def __init__(self, channel, bundle, source):
        info = bundle.sources[source]
        self.q: queue.Queue = queue.Queue()
        self.q.put(pb.UplinkMessage(header=pb.StreamHeader(
            group="steady", node_id=f"s{source}", source_index=source, bundle_id=bundle.bundle_id,
            input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=7)))
        self.call = pb_grpc.FusionDecoderStub(channel).Uplink(iter(self.q.get, None))
        self.acks: list[int] = []
        self.reader = threading.Thread(target=lambda: self.acks.extend(a.last_seq for a in self.call), daemon=True)
        self.reader.start()
        self.seq = 0

    def send(self, window: int, payload: bytes) -> None:
        self.seq += 1
        self.q.put(pb.UplinkMessage(batch=pack_batch([FrameData(self.seq, window, 0, crc32(payload), payload)])))

    def close(self) -> None:
        self.q.put(None)
        self.reader.join(30)


def frames_strategy(payloads):
    real = st.sampled_from(payloads)
    payload = st.one_of(
        real, real, real,  # real, decodable (so streams live long enough to reach later checks)
        st.sampled_from(payloads).map(lambda p: p[: max(0, len(p) - 3)]),  # truncated
        st.tuples(st.sampled_from(payloads), st.binary(min_size=1, max_size=16)).map(lambda t: t[0] + t[1]),
        st.binary(max_size=200),
    )
    frame = st.tuples(
        st.sampled_from([1, 1, 1, 1, 2, 0, -1, 5000]),  # seq step: next, gap, replay, far future
        st.integers(0, 3),  # window skip
        st.sampled_from([True] * 6 + [False]),  # crc ok?
        payload,
    )
    return st.lists(frame, min_size=4, max_size=120)


def test_guarantee_fuzzed_frames_never_crash_or_leak_the_decoder_and_good_frames_are_all_decoded(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)
    good = encoded_windows(gaussian_bundle, 16)
    payloads = [p for _, row in good for p in row]
    decoder = LiveDecoder(gaussian_bundle)
    channel = grpc.insecure_channel(decoder.address)
    stub = pb_grpc.FusionDecoderStub(channel)
    subscription = stub.Subscribe(pb.SubscribeRequest(group="steady"))
    steady_seen: list[pb.Reconstruction] = []
    collector = threading.Thread(target=lambda: steady_seen.extend(subscription), daemon=True)
    collector.start()
    steady = [SteadyNode(channel, bundle, i) for i in range(2)]
    state = {"examples": 0, "window": 0, "baseline": None}

    def send_steady():
        w = state["window"]
        _, row = good[w % len(good)]
        for node, p in zip(steady, row):
            node.send(w, p)
        state["window"] += 1

    @settings(max_examples=3800, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(
        group=st.sampled_from(["fz0", "fz1", "fz2", "fz3", "steady", ""]),
        # never the steady nodes' ids: without credentials a node id is only a claim
        node=st.sampled_from(["n0", "n1"] * 3 + [""]),
        source=st.sampled_from([0, 1] * 4 + [2, 2**31]),
        bundle_ok=st.sampled_from([True] * 19 + [False]),
        shape_ok=st.sampled_from([True] * 19 + [False]),
        incarnation=st.sampled_from([1, 2, 3] * 6 + [0]),  # 0 is refused (bad_incarnation): rarely
        first_seq=st.sampled_from([1, 1, 1, 2, 0, 10**6]),
        frames=frames_strategy(payloads),
        # 1 in 5 streams carries a raw garbage message right after its header
        garbage=st.integers(0, 9).flatmap(lambda k: st.binary(min_size=1, max_size=64) if k == 0
                                          else st.just(b"\x12" + b"\xff" * 9) if k == 1 else st.none()),
        split=st.integers(1, 120),
    )
    def throw(group, node, source, bundle_ok, shape_ok, incarnation, first_seq, frames, garbage, split):
        info = bundle.sources[source] if source < bundle.n_sources else bundle.sources[0]
        shape = list(info.input_shape) if shape_ok else [info.input_shape[0], info.input_shape[-1] + 1]
        msgs = [pb.UplinkMessage(header=pb.StreamHeader(
            group=group, node_id=node, source_index=source, bundle_id=bundle.bundle_id if bundle_ok else "x",
            input_shape=shape, latent_shape=list(info.latent_shape), incarnation=incarnation)).SerializeToString()]
        seq, window, batch = first_seq, 0, []
        for step, skip, crc_ok, p in frames:
            seq, window = max(0, seq + step), window + skip + 1
            batch.append(FrameData(seq, window, 0, crc32(p) if crc_ok else crc32(p) ^ 0xA5, p))
        for k in range(0, len(batch), split):
            chunk = batch[k:k + split]
            msg = pb.UplinkMessage(batch=pb.FrameBatch(first_seq=chunk[0].seq, first_window=chunk[0].window))
            for f in chunk:  # seqs/windows as generated (not necessarily consecutive)
                msg.batch.frames.add(crc32=f.crc32, payload=f.payload)
            msgs.append(msg.SerializeToString())
        if garbage is not None:
            msgs.insert(1, garbage)  # right after the header, so it is read unless the header was refused
        call = channel.stream_stream("/ndsc.v1.FusionDecoder/Uplink", request_serializer=lambda b: b,
                                     response_deserializer=pb.Ack.FromString)(iter(msgs), timeout=30)
        try:
            for _ in call:
                pass
        except grpc.RpcError as exc:
            assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                                      grpc.StatusCode.DEADLINE_EXCEEDED), exc
        send_steady()
        state["examples"] += 1
        if state["examples"] == 300:  # past warm-up (lazy imports, first allocations)
            state["baseline"] = decoder.status()

    try:
        throw()
        for node in steady:
            node.close()
        frames_in = decoder.metric("ndsc_uplink_frames_per_message_sum")
        end = decoder.status()
        streams = decoder.metric("ndsc_active_streams")
        rejected = {dict(lab)["reason"] for (n, lab) in scrape(decoder.metrics_url)
                    if n == "ndsc_streams_rejected_total"}
    finally:
        decoder.close()  # drains: the Subscribe stream ends
        collector.join(30)
        channel.close()
    (rss0, threads0), (rss1, threads1) = state["baseline"], end
    # ≥ 10 000 generated frames reached the decoder's frame checks (the steady group's not counted)
    assert frames_in - 2 * state["window"] >= FRAMES_WANTED, frames_in
    assert streams == 0  # every handler of a finished stream is gone (no leaked tasks)
    assert threads1 <= threads0 + 2, (threads0, threads1)
    assert rss1 - rss0 < 32 * 2**20, (rss0, rss1)
    # every well-formed window sent between examples was decoded, once, from both sources
    windows = [r.window for r in steady_seen]
    assert sorted(windows) == list(range(state["window"])), (len(windows), state["window"])
    assert all(list(r.present) == [True, True] for r in steady_seen)
    assert {"malformed", "crc_mismatch", "undecodable", "bundle_mismatch", "shape_mismatch", "seq_out_of_range",
            "unknown_source"} <= rejected, rejected
