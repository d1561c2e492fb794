"""The decoder's side of one Uplink stream as a plain state machine (no sockets, no clock).

``header`` → ``batches`` → accepted frames, or a refusal (a :class:`StreamRefused` with a
precise status and a metric reason). One :class:`UplinkReceiver` per stream; the node's
:class:`~fusion_decoder.sessions.NodeSession` (resume point, incarnation) outlives it in the
:class:`~fusion_decoder.sessions.SessionTable`. The gRPC servicer is a thin adapter: it
feeds messages in, counts what comes out, and adds the checks that need decoder state
(another source's frame shape, entropy decoding). Its partner is
:class:`ndsc.wire.sender.Sender`; ``tests/serving/test_protocol_properties.py`` drives the
two against each other with loss, reconnects and restarts.

Typical use::

    rx = UplinkReceiver(sessions)
    ack = rx.open(first_message, metadata)        # raises StreamRefused
    for message in stream:
        screened = rx.screen(message, time.time())
        held, lost = rx.commit(screened.frames)    # after they are durable
        if screened.refusal: abort(screened.refusal)
        send(rx.ack())
    rx.close()
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import grpc

from fusion_decoder.sessions import NodeSession, SessionTable, StreamRefused
from ndsc.wire import FrameData, crc32, pb, unpack_batch
from ndsc.wire.limits import MAX_SEQ, MAX_WINDOW_INDEX


@dataclass(frozen=True)
class StreamLimits:
    """Bounds on what one stream may send.

    Attributes:
        max_seq_gap: a frame more than this many seqs past the last held one is refused.
        max_chunks: most chunks one window's payload may be split into.
        max_capture_age, max_capture_lead: seconds before / after the decoder's clock a
            capture time may lie; outside, it becomes unknown (0) and is counted.
    """

    max_seq_gap: int = 1 << 20
    max_chunks: int = 4096
    max_capture_age: float = 86400.0
    max_capture_lead: float = 60.0


@dataclass
class Screened:
    """What one FrameBatch yields: the new frames up to the first bad one, that one's refusal,
    and per outcome (``duplicate``, ``crc_mismatch``, ``capture_time_out_of_range``) a count."""

    frames: list[FrameData]
    refusal: StreamRefused | None = None
    counts: dict[str, int] = field(default_factory=dict)
    payload_bytes: int = 0  # of every frame the message carries, good or bad
    message_frames: int = 0  # frames the message carries, good or bad


class UplinkReceiver:
    """The rules of one Uplink stream."""

    def __init__(self, sessions: SessionTable, limits: StreamLimits = StreamLimits()):
        self.sessions = sessions
        self.limits = limits
        self.session: NodeSession | None = None
        self.restarted = False  # the header opened a new incarnation of a known node
        self._stream_high = 0  # highest seq this stream carried: a stream never repeats itself

    def open(self, message: pb.UplinkMessage, metadata: Sequence[tuple[str, str]] = ()) -> pb.Ack:
        """Check the stream's first message (a StreamHeader); returns the first Ack (resume point).

        Raises:
            StreamRefused: ``bad_header`` when it is not a header, or what
                :meth:`SessionTable.open` raises.
        """
        if message.WhichOneof("kind") != "header":
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_header",
                                "the first uplink message must be a StreamHeader")
        restarts = self.sessions.restarts
        self.session = self.sessions.open(message.header, metadata)
        self.restarted = self.sessions.restarts > restarts
        self.session.active = True
        return self.ack()

    def ack(self) -> pb.Ack:
        return pb.Ack(last_seq=self.session.last_seq)

    def close(self) -> None:
        if self.session is not None:
            self.session.active = False

    def screen(self, message: pb.UplinkMessage, now: float, after: FrameData | None = None) -> Screened:
        """Check a later message's frames in order, without changing the session (see :meth:`commit`).

        Resends of frames already held are dropped and counted as ``duplicate`` (idempotent);
        everything else wrong refuses the stream. ``now``: the decoder's clock, Unix seconds.
        ``after``: the last frame screened from earlier messages but not yet committed (several
        messages checked, then made durable together): this message continues from it.

        Raises:
            StreamRefused: ``bad_header`` when the message is a second header, ``unrequested_syndrome``
                when it is a SyndromeReply (this stream's source is not a syndrome source).
        """
        kind = message.WhichOneof("kind")
        if kind != "batch":
            if kind == "syndrome":  # a syndrome source's replies are split off before (feedback.split_replies)
                raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "unrequested_syndrome",
                                    "a SyndromeReply on a stream of a direct-coded source")
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_header", "StreamHeader sent twice in one stream")
        s, lim = self.session, self.limits
        last_seq, last_window, last_chunk, last_chunks = s.last_seq, s.last_window, s.last_chunk, s.last_chunks
        if after is not None:
            last_seq, last_window, last_chunk, last_chunks = after.seq, after.window, after.chunk, after.chunks
        out = Screened([])
        earliest, latest = (now - lim.max_capture_age) * 1e6, (now + lim.max_capture_lead) * 1e6

        def refuse(code: grpc.StatusCode, reason: str, text: str) -> Screened:
            out.refusal = StreamRefused(code, reason, text)
            return out

        frames = unpack_batch(message.batch)
        out.payload_bytes, out.message_frames = sum(len(f.payload) for f in frames), len(frames)
        for frame in frames:
            held = out.frames[-1].seq if out.frames else last_seq
            if frame.seq == 0:
                return refuse(grpc.StatusCode.INVALID_ARGUMENT, "bad_seq", "seq 0 in a FrameBatch (seqs start at 1)")
            if frame.seq <= self._stream_high:
                return refuse(grpc.StatusCode.INVALID_ARGUMENT, "seq_replayed",
                              f"seq {frame.seq} repeated within one stream (already sent up to {self._stream_high})")
            if frame.seq > last_seq + 1 + lim.max_seq_gap or frame.seq > MAX_SEQ:
                return refuse(grpc.StatusCode.OUT_OF_RANGE, "seq_out_of_range",
                              f"seq {frame.seq} is more than {lim.max_seq_gap} ahead of the last held seq {last_seq} "
                              f"or beyond 2^53-1")
            if frame.window > MAX_WINDOW_INDEX:
                # the documented range (docs/wire.md): exact in a double, fits the journal's INTEGER
                return refuse(grpc.StatusCode.OUT_OF_RANGE, "window_out_of_range",
                              f"frame seq {frame.seq}: window index {frame.window} beyond 2^53-1; held up to seq {held}")
            if not frame.payload and frame.chunks > 1:
                # a whole payload may be empty (docs/bitstream.md: every symbol at index 0 costs
                # 0 bytes); a chunk may not: a sender splits only payloads over its chunk budget
                return refuse(grpc.StatusCode.INVALID_ARGUMENT, "empty_chunk",
                              f"frame seq {frame.seq} (window {frame.window}, chunk {frame.chunk} of {frame.chunks}): "
                              f"empty chunk; held up to seq {held}")
            self._stream_high = frame.seq
            if frame.seq <= last_seq:
                out.counts["duplicate"] = out.counts.get("duplicate", 0) + 1
                continue
            if crc32(frame.payload) != frame.crc32:
                # DATA_LOSS, not INVALID_ARGUMENT: the request was well-formed but its bytes
                # were corrupted in transit; the edge resends from the last ack.
                out.counts["crc_mismatch"] = 1
                return refuse(grpc.StatusCode.DATA_LOSS, "crc_mismatch",
                              f"frame seq {frame.seq} (window {frame.window}): crc32 mismatch; held up to seq {held}")
            refused = self._check_chunk(frame, last_window, last_chunk, last_chunks)
            if refused is not None:
                out.refusal = refused
                return out
            if not earliest <= frame.capture_us <= latest:
                # a clock far off (or a forged time) would poison the latency histogram: the frame
                # is kept, its capture time becomes unknown (0) and is counted
                out.counts["capture_time_out_of_range"] = out.counts.get("capture_time_out_of_range", 0) + 1
                frame = replace(frame, capture_us=0)
            out.frames.append(frame)
            last_seq, last_window, last_chunk, last_chunks = frame.seq, frame.window, frame.chunk, frame.chunks
        return out

    def commit(self, frames: Sequence[FrameData]) -> tuple[list[FrameData], int]:
        """Advance the session past ``frames`` (screened, durable). Returns the frames that are new
        to the session and the seqs skipped before them (frames the edge's full buffer dropped:
        counted as lost). A frame another stream of the same node committed between this one's
        screen and commit (a reconnect racing its old stream) is not new: it is left out, never
        held twice nor counted as a negative gap."""
        fresh, lost = [], 0
        for f in frames:
            if f.seq <= self.session.last_seq:
                continue
            lost += self.session.commit(f)
            fresh.append(f)
        return fresh, lost

    def _check_chunk(self, frame: FrameData, last_window: int, last_chunk: int,
                     last_chunks: int) -> StreamRefused | None:
        """Window order with chunks: a window's first chunk (or its only frame) comes after the
        previous window; a later chunk may continue the previous frame's window, in increasing
        chunk order with the same count (chunks the edge dropped leave gaps, never reorder)."""
        def where() -> str:
            return f"frame seq {frame.seq} (window {frame.window}, chunk {frame.chunk} of {frame.chunks})"

        if frame.chunk >= frame.chunks:
            return StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_chunk", f"{where()}: chunk index not below count")
        if frame.chunks > self.limits.max_chunks:
            return StreamRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_chunks",
                                 f"{where()}: more than {self.limits.max_chunks} chunks per window")
        if frame.window > last_window:
            return None
        continues = (frame.chunk > 0 and frame.window == last_window
                     and (last_chunks == 0 or (frame.chunks == last_chunks and frame.chunk > last_chunk)))
        if continues:
            return None
        if frame.chunk > 0 and frame.window == last_window:
            return StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_chunk",
                                 f"{where()}: does not continue chunk {last_chunk} of {last_chunks} of its window")
        return StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "window_order",
                             f"frame seq {frame.seq}: window {frame.window} not after window {last_window}")
