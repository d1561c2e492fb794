"""One Uplink stream of a syndrome-coded source: feedback requests out (in Acks), answers in.

The servicer keeps its loop and asks this adapter three things: wait for the next messages
*or* for feedback to send (:meth:`SyndromeFeedback.take`), add the pending requests and the
settled mark to an Ack (:meth:`ack`), and take a :class:`~ndsc.wire.pb.SyndromeReply`
(:meth:`take_reply`). Streams of direct sources get no adapter (``open`` returns None), so
their hot path is unchanged.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Awaitable, Callable

from fusion_decoder.metrics import StreamSeries
from fusion_decoder.sessions import NodeSession
from ndsc.wire import GRPC_MESSAGE_PREFIX_BYTES, pb

if TYPE_CHECKING:
    from fusion_decoder.binning import BinningStage
    from fusion_decoder.pipeline import DecodePipeline
    from fusion_decoder.readahead import ReadAhead


async def split_replies(feedback: "SyndromeFeedback", context, messages: list,
                        refuse: Callable[..., Awaitable[None]]) -> list:
    """A syndrome source's ``messages`` less the SyndromeReplies among them, which are handed to
    ``feedback`` first (a direct source's stream has no feedback: the receiver's check refuses a
    reply there, ``unrequested_syndrome``)."""
    out = []
    for message in messages:
        if _is_reply(message):
            await feedback.take_reply(context, message, refuse)
        else:
            out.append(message)
    return out


def _is_reply(message) -> bool:
    return isinstance(message, pb.UplinkMessage) and message.WhichOneof("kind") == "syndrome"


class SyndromeFeedback:
    """Feedback of one stream of a syndrome source (see the module docstring)."""

    def __init__(self, pipeline: "DecodePipeline", stage: "BinningStage", session: NodeSession,
                 series: StreamSeries, count: Callable[..., None]):
        self.pipeline = pipeline
        self.stage = stage
        self.session = session
        self.series = series
        self._count = count
        self.outbox = stage.attach(session.group, session.source_index)
        self._take: asyncio.Future | None = None

    @classmethod
    def open(cls, pipeline: "DecodePipeline", session: NodeSession, series: StreamSeries,
             count: Callable[..., None]) -> "SyndromeFeedback | None":
        """The adapter for a stream of a syndrome source, else None."""
        stage = pipeline.binning
        if stage is None or session.source_index not in stage.decoders:
            return None
        return cls(pipeline, stage, session, series, count)

    async def take(self, inbox: "ReadAhead", within: float | None = None) -> list | None:
        """The next messages (as ``inbox.take()``), or None when requests wait to be sent first or
        nothing came ``within`` seconds."""
        if self.outbox.ready.is_set():
            return None
        if self._take is None:  # kept across calls: a read is never cancelled half-way
            self._take = asyncio.ensure_future(inbox.take())
        ready = asyncio.ensure_future(self.outbox.ready.wait())
        try:
            await asyncio.wait({self._take, ready}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self._take.done():
            return None
        take, self._take = self._take, None
        return take.result()

    def ack(self, ack: pb.Ack) -> pb.Ack:
        """``ack`` with the pending requests and the window below which none will come."""
        s = self.session
        ack.requests.extend(self.outbox.drain())
        aligner = self.pipeline.aligners.get(s.group)
        waiting = aligner.held_windows(s.source_index) if aligner is not None else []
        settled = self.stage.settled_below(s.group, s.source_index, s.last_window)
        ack.settled_below = max(0, min([settled, *waiting]))
        return ack

    async def take_reply(self, context, message: pb.UplinkMessage, refuse: Callable[..., Awaitable[None]]) -> None:
        """Hand a SyndromeReply's blocks to the binning stage; refuse the stream at a bad one."""
        s, series = self.session, self.series
        series.messages.inc()
        nbytes = sum(len(b.bits) for b in message.syndrome.blocks)
        series.payload_bytes.inc(nbytes)
        series.protocol_bytes.inc(message.ByteSize() - nbytes + GRPC_MESSAGE_PREFIX_BYTES)
        for block in message.syndrome.blocks:
            refusal = await self.stage.on_reply(s.group, s.source_index, block)
            if refusal is not None:
                series.frames(refusal.reason).inc()
                await refuse(context, refusal)
            # every requested bit counts in the rate (no new samples: the window was counted once)
            self._count(s.group, s.source_index, len(block.bits), 0, series, 0)

    def close(self) -> None:
        if self._take is not None:
            self._take.cancel()
        self.stage.detach(self.session.group, self.session.source_index, self.outbox)
