"""The Uplink protocol without sockets: the edge's Sender against the decoder's UplinkReceiver.

Hypothesis drives both state machines through lost messages, lost acks, broken streams,
messages the decoder reads ahead and holds together (one commit, one cumulative ack),
messages of a dead stream delivered late (after the node reconnected), node restarts and
send-buffer overflow, and checks what the decoder holds against what the node coded.
"""
from __future__ import annotations

import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_decoder.receiver import UplinkReceiver
from fusion_decoder.sessions import SessionTable, StreamRefused
from ndsc.bundle import load_bundle
from ndsc.wire import FrameData, crc32, pack_batch, pb
from ndsc.wire.sender import Sender

NOW = time.time()
CAPTURE_US = int(NOW * 1e6)
SHAPE = (1, 8)

STEPS = ["produce"] * 4 + ["send"] * 4 + ["send_together", "send_ack_lost", "send_lost", "send_late", "deliver_late",
                                          "restart"]


class Network:
    """One node (its Sender, re-created on restart) and one decoder session table, joined by
    streams that can break; records everything the decoder accepted."""

    def __init__(self, bundle, buffer_frames: int, chunk_bytes: int, max_batch: int):
        self.bundle = bundle
        self.table = SessionTable(bundle)
        self.buffer_frames, self.chunk_bytes, self.max_batch = buffer_frames, chunk_bytes, max_batch
        self.incarnation = 1
        self.tx = Sender(buffer_frames, chunk_bytes)
        self.rx: UplinkReceiver | None = None
        self.late: list[tuple[UplinkReceiver, pb.UplinkMessage]] = []
        self.created: dict[tuple[int, int], FrameData] = {}  # (incarnation, seq) → frame as coded
        self.accepted: list[tuple[int, FrameData]] = []  # (incarnation, frame) in acceptance order
        self.lost: dict[int, int] = {}  # per incarnation: seq gaps the receiver counted
        self.dropped: dict[int, int] = {}  # per incarnation: frames its full buffer dropped
        self.duplicates = 0
        self.next_window = 0

    def header(self) -> pb.UplinkMessage:
        info = self.bundle.sources[0]
        return pb.UplinkMessage(header=pb.StreamHeader(
            group="prop", node_id="n0", source_index=0, bundle_id=self.bundle.bundle_id,
            input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=self.incarnation))

    def produce(self, payload: bytes, skip: int) -> None:
        first = self.tx.next_seq
        _, dropped = self.tx.enqueue(self.next_window, CAPTURE_US + self.next_window, payload, SHAPE, 0.0)
        self.dropped[self.incarnation] = self.dropped.get(self.incarnation, 0) + dropped
        for p in self.tx.buffer:
            if p.frame.seq >= first:
                self.created[(self.incarnation, p.frame.seq)] = p.frame
        self.next_window += 1 + skip

    def connect(self) -> None:
        self.rx = UplinkReceiver(self.table)
        ack = self.rx.open(self.header())
        self.tx.resume(ack.last_seq)

    def send(self) -> pb.UplinkMessage | None:
        if self.rx is None:
            self.connect()
        pending, _ = self.tx.next_frames(None, self.max_batch)
        if not pending:
            return None
        frames = [p.frame for p in pending]
        self.tx.sent(frames[-1].seq)
        return pb.UplinkMessage(batch=pack_batch(frames))

    def deliver(self, rx: UplinkReceiver, message: pb.UplinkMessage, incarnation: int,
                *more: pb.UplinkMessage) -> pb.Ack:
        """The decoder reads ``message`` (and ``more`` read ahead with it), holds their frames in one
        commit and answers with one cumulative ack, as the servicer does."""
        frames: list[FrameData] = []
        for m in (message, *more):
            screened = rx.screen(m, NOW, frames[-1] if frames else None)
            assert screened.refusal is None, screened.refusal.message  # a well-behaved node is never refused
            self.duplicates += screened.counts.get("duplicate", 0)
            frames += screened.frames
        held, lost = rx.commit(frames)
        assert held == frames  # nothing interleaved between screen and commit here
        self.lost[incarnation] = self.lost.get(incarnation, 0) + lost
        self.accepted += [(incarnation, f) for f in held]
        return rx.ack()

    def break_stream(self) -> None:
        if self.rx is not None:
            self.rx.close()
        self.rx = None

    def step(self, kind: str, payload: bytes, skip: int) -> None:
        if kind == "produce":
            self.produce(payload, skip)
        elif kind == "deliver_late":
            if self.late:
                rx, message = self.late.pop(0)
                self.deliver(rx, message, rx.session.incarnation)  # its stream is gone: the ack goes nowhere
        elif kind == "restart":  # a new node process: its buffer is gone, seqs start again at 1
            self.break_stream()
            self.incarnation += 1
            self.tx = Sender(self.buffer_frames, self.chunk_bytes)
        else:
            message = self.send()
            if message is None:
                return
            if kind == "send":
                self.tx.on_ack(self.deliver(self.rx, message, self.incarnation).last_seq)
            elif kind == "send_together":  # a second message sent before the first was read: held together
                second = self.send()
                more = (second,) if second is not None else ()
                self.tx.on_ack(self.deliver(self.rx, message, self.incarnation, *more).last_seq)
            elif kind == "send_ack_lost":  # delivered, then the stream broke before the ack came back
                self.deliver(self.rx, message, self.incarnation)
                self.break_stream()
            elif kind == "send_lost":
                self.break_stream()
            elif kind == "send_late":  # the decoder reads it only after the node has reconnected
                self.late.append((self.rx, message))
                self.break_stream()

    def drain(self) -> None:
        """A reliable network until the node's buffer is acknowledged, then every late message."""
        for _ in range(10_000):
            if not self.tx.unacknowledged:
                break
            message = self.send()  # None when the resume ack already covered the buffer
            if message is not None:
                self.tx.on_ack(self.deliver(self.rx, message, self.incarnation).last_seq)
        assert not self.tx.unacknowledged
        while self.late:
            self.step("deliver_late", b"", 0)


@pytest.fixture(scope="module")
def bundle(gaussian_bundle):
    return load_bundle(gaussian_bundle)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(st.sampled_from(STEPS), st.binary(min_size=1, max_size=40), st.integers(0, 3)),
                   max_size=150),
    buffer_frames=st.integers(1, 48),
    chunk_bytes=st.integers(1, 48),
    max_batch=st.integers(1, 16),
)
def test_sender_and_receiver_agree_on_every_frame_through_loss_reconnects_late_messages_and_restarts(
        bundle, steps, buffer_frames, chunk_bytes, max_batch):
    net = Network(bundle, buffer_frames, chunk_bytes, max_batch)
    for kind, payload, skip in steps:
        net.step(kind, payload, skip)
    net.drain()

    # nothing the decoder holds is held twice, and each is byte-exactly the frame the node coded
    keys = [(inc, f.seq) for inc, f in net.accepted]
    assert len(keys) == len(set(keys))
    for inc, f in net.accepted:
        assert net.created[(inc, f.seq)] == f
    # per node process, frames are held in seq order, so windows never go backwards
    for inc in {i for i, _ in net.accepted}:
        seqs = [f.seq for i, f in net.accepted if i == inc]
        assert seqs == sorted(seqs)
    # the last process's frames are all accounted for: each seq held once or counted lost once
    # (lost only where its full buffer dropped a frame before it was ever delivered)
    last = net.incarnation
    created = [seq for inc, seq in net.created if inc == last]
    held = [f.seq for inc, f in net.accepted if inc == last]
    if created:
        assert held and held[-1] == max(created)
        assert len(held) + net.lost.get(last, 0) == max(created)
    assert net.lost.get(last, 0) <= net.dropped.get(last, 0)  # only what the buffer dropped may be lost
    assert net.tx.acked == net.tx.next_seq - 1


def test_receiver_counts_resends_as_duplicates_and_refuses_corruption_with_data_loss(bundle):
    table = SessionTable(bundle)
    tx = Sender(buffer_frames=8, chunk_bytes=4)
    for w in range(3):
        tx.enqueue(w, CAPTURE_US, bytes([w]) * 6, SHAPE, 0.0)  # 6 bytes in chunks of 4: two frames each
    net = Network(bundle, 8, 4, 8)
    rx = UplinkReceiver(table)
    assert rx.open(net.header()).last_seq == 0
    frames = [p.frame for p in tx.next_frames(None, 8)[0]]
    assert [(f.window, f.chunk, f.chunks) for f in frames] == [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2),
                                                               (2, 0, 2), (2, 1, 2)]
    screened = rx.screen(pb.UplinkMessage(batch=pack_batch(frames[:4])), NOW)
    assert screened.refusal is None and rx.commit(screened.frames) == (frames[:4], 0) and rx.ack().last_seq == 4
    # a reconnect resends from the ack: the held ones are duplicates, never an error
    rx2 = UplinkReceiver(table)
    assert rx2.open(net.header()).last_seq == 4 and tx.resume(2) == 0
    screened = rx2.screen(pb.UplinkMessage(batch=pack_batch(frames[2:6])), NOW)
    assert screened.counts == {"duplicate": 2} and [f.seq for f in screened.frames] == [5, 6]
    rx2.commit(screened.frames)
    bad = FrameData(7, 3, CAPTURE_US, crc32(b"ok"), b"ko")
    screened = rx2.screen(pb.UplinkMessage(batch=pack_batch([bad])), NOW)
    assert screened.refusal.code == grpc.StatusCode.DATA_LOSS and screened.frames == []
    with pytest.raises(StreamRefused) as refused:  # a second header on one stream
        rx2.screen(net.header(), NOW)
    assert refused.value.reason == "bad_header"


def test_sender_drops_the_oldest_frames_beyond_its_buffer_and_the_receiver_counts_the_gap_as_lost(bundle):
    net = Network(bundle, buffer_frames=2, chunk_bytes=64, max_batch=8)
    for w in range(5):
        net.produce(bytes([w + 1]), 0)
    net.drain()
    assert [f.seq for _, f in net.accepted] == [4, 5] and net.lost == {1: 3}


def test_a_reconnect_racing_its_old_stream_holds_each_frame_once_and_never_counts_a_negative_gap(bundle):
    """Both streams of one node screen the same frames before either commits them (the decoder
    awaits the journal and the entropy check between the two steps)."""
    table = SessionTable(bundle)
    net = Network(bundle, 8, 64, 8)
    tx = Sender(buffer_frames=8, chunk_bytes=64)
    for w in range(3):
        tx.enqueue(w, CAPTURE_US, bytes([w + 1]), SHAPE, 0.0)
    frames = [p.frame for p in tx.next_frames(None, 8)[0]]
    old, new = UplinkReceiver(table), UplinkReceiver(table)
    old.open(net.header())
    new.open(net.header())
    a = old.screen(pb.UplinkMessage(batch=pack_batch(frames[:2])), NOW)
    b = new.screen(pb.UplinkMessage(batch=pack_batch(frames)), NOW)
    assert [f.seq for f in a.frames] == [1, 2] and [f.seq for f in b.frames] == [1, 2, 3]
    assert old.commit(a.frames) == (frames[:2], 0)
    assert new.commit(b.frames) == (frames[2:], 0)  # 1 and 2 were held by the old stream meanwhile
    assert new.ack().last_seq == 3
