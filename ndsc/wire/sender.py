"""The edge's side of the Uplink as a plain state machine (no sockets, no clock of its own).

Seqs, chunks, the bounded resend buffer, acks and resume: coded windows go in
(:meth:`Sender.enqueue`), batches of frames come out (:meth:`Sender.next_frames` +
:meth:`Sender.sent`), acks trim the buffer (:meth:`Sender.on_ack`), and a new stream
resumes from the decoder's first ack (:meth:`Sender.resume`). The edge node
(``edge_encoder.node.EdgeNode``) is a thin adapter that owns the socket and the clock. Its
partner is ``fusion_decoder.receiver.UplinkReceiver``; the two are tested against each
other with loss, reconnects and restarts in ``tests/serving/test_protocol_properties.py``.

Typical use::

    tx = Sender(buffer_frames=4096, chunk_bytes=1 << 20)
    tx.enqueue(window, capture_us, payload, shape, now)
    tx.resume(first_ack.last_seq)                  # on every new stream
    frames = [p.frame for p in tx.next_frames(shape, 64)[0]]
    write(pack_batch(frames)); tx.sent(frames[-1].seq)
    tx.on_ack(ack.last_seq)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ndsc.wire import FrameData, crc32, split_payload


@dataclass
class Pending:
    """A frame awaiting acknowledgement."""

    frame: FrameData
    enqueued: float  # the caller's clock when it was enqueued (the flush interval)
    shape: tuple[int, ...]  # the window's input shape: one stream carries frames of one shape


class Sender:
    """One node's frames from coding to acknowledgement.

    Args:
        buffer_frames: unacknowledged frames kept for resend; beyond it the oldest are
            dropped (the decoder sees the seq gap and counts it as lost).
        chunk_bytes: a payload larger than this travels as several frames (chunks).
    """

    def __init__(self, buffer_frames: int, chunk_bytes: int):
        if buffer_frames < 1 or chunk_bytes < 1:
            raise ValueError("buffer_frames and chunk_bytes must be >= 1")
        self.buffer_frames = buffer_frames
        self.chunk_bytes = chunk_bytes
        self.buffer: deque[Pending] = deque()
        self.next_seq = 1  # seqs start at 1 per node process (0 is refused by the decoder)
        self.acked = 0  # highest seq the decoder acknowledged
        self.sent_upto = 0  # highest seq written on the current stream
        self.last_window = -1

    def enqueue(
        self, window: int, capture_us: int, payload: bytes, shape: tuple[int, ...], now: float
    ) -> tuple[int, int]:
        """Add one coded window; returns (frames it became, frames dropped from a full buffer).

        Raises:
            ValueError: a window index not above the previous one (the caller skips it).
        """
        if window <= self.last_window:
            raise ValueError(f"window {window} not after window {self.last_window}")
        chunks = split_payload(payload, self.chunk_bytes)
        for j, part in enumerate(chunks):
            frame = FrameData(self.next_seq, window, capture_us, crc32(part), part, j, len(chunks))
            self.next_seq += 1
            self.buffer.append(Pending(frame, now, tuple(shape)))
        self.last_window = window
        dropped = 0
        while len(self.buffer) > self.buffer_frames:
            self.buffer.popleft()
            dropped += 1
        return len(chunks), dropped

    def on_ack(self, last_seq: int) -> None:
        """The decoder holds every seq up to ``last_seq`` (acks may arrive late: never move back)."""
        self.acked = max(self.acked, last_seq)
        while self.buffer and self.buffer[0].frame.seq <= self.acked:
            self.buffer.popleft()

    def resume(self, last_seq: int) -> int:
        """A new stream's first ack: rewind to what the decoder holds; returns how many
        buffered frames will be sent again."""
        self.on_ack(last_seq)
        resent = sum(1 for p in self.buffer if p.frame.seq <= self.sent_upto)
        self.sent_upto = self.acked
        return resent

    def next_frames(self, shape: tuple[int, ...] | None, max_frames: int) -> tuple[list[Pending], bool]:
        """Up to ``max_frames`` unsent frames of ``shape`` (None: any), stopping before the first
        frame of another shape; and whether such a frame follows (the stream must end)."""
        if not self.buffer:
            return [], False
        start = max(0, self.sent_upto + 1 - self.buffer[0].frame.seq)
        out: list[Pending] = []
        for i in range(start, min(len(self.buffer), start + max_frames)):
            p = self.buffer[i]
            if shape is not None and p.shape != tuple(shape):
                return out, True
            out.append(p)
        return out, False

    def sent(self, seq: int) -> None:
        """Frames up to ``seq`` were written on the current stream."""
        self.sent_upto = max(self.sent_upto, seq)

    @property
    def unacknowledged(self) -> int:
        return len(self.buffer)
