"""The ``ndsc.v1.FusionDecoder`` RPCs: a thin adapter over plain logic.

Stream rules live in :class:`fusion_decoder.receiver.UplinkReceiver` (one per stream),
sessions in :mod:`fusion_decoder.sessions`, windows in :class:`fusion_decoder.pipeline.DecodePipeline`.
This module reads messages, applies the checks that need decoder state (another source's
frame shape, entropy decoding), makes frames durable, counts, and answers.
"""
from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import grpc
import numpy as np

from fusion_decoder.broadcast import pack_reconstruction_batch
from fusion_decoder.feedback import SyndromeFeedback, split_replies
from fusion_decoder.grpc_handlers import BadRequest
from fusion_decoder.journal import Journal, SessionRow, unsigned64
from fusion_decoder.loglimit import LogLimiter
from fusion_decoder.metrics import DecoderMetrics, StreamSeries
from fusion_decoder.pipeline import DecodePipeline
from fusion_decoder.readahead import IdleStream, ReadAhead
from fusion_decoder.receiver import StreamLimits, UplinkReceiver
from fusion_decoder.sessions import MAX_FRAME_AREA, Authorizer, NodeSession, SessionTable, StreamRefused
from ndsc.bundle import Bundle
from ndsc.entropy import EntropyCodingError
from ndsc.wire import GRPC_MESSAGE_PREFIX_BYTES, FrameData, pb, pb_grpc, protocol_bytes
from ndsc.wire.limits import name_problem

log = logging.getLogger("ndsc.decoder")

#: a message's payloads up to this many bytes are entropy-decoded on the event loop: handing
#: them to a thread costs more (~70 µs a hop) than decoding them (~25 µs for 4×64 symbols)
INLINE_DECODE_BYTES = 16 * 1024


class _Tally:
    """A take's message counts, added to the stream's metric series once (not per message)."""

    __slots__ = ("messages", "payload_bytes", "protocol_bytes", "frames")

    def __init__(self) -> None:
        self.messages = self.payload_bytes = self.protocol_bytes = 0
        self.frames: dict[str, int] = {}  # per frame status (duplicate, crc_mismatch, ...)

    def count(self, series: StreamSeries) -> None:
        if self.messages:
            series.add(series.messages, self.messages)
            series.add(series.payload_bytes, self.payload_bytes)
            series.add(series.protocol_bytes, self.protocol_bytes)
        for status, n in self.frames.items():
            series.add(series.frames(status), n)


#: the refusal that ends a stream because the decoder drains (not counted as a client's fault)
_DRAINING = StreamRefused(grpc.StatusCode.UNAVAILABLE, "draining", "decoder is shutting down")


def _message_size(message) -> int:
    """Serialized bytes of an uplink message (0 for a refused one: it holds nothing)."""
    return message.ByteSize() if isinstance(message, pb.UplinkMessage) else 0


class FusionDecoderServicer(pb_grpc.FusionDecoderServicer):
    """The ``ndsc.v1.FusionDecoder`` RPCs.

    Every refusal has a precise status and a reason counted in
    ``ndsc_streams_rejected_total{reason}`` (uplinks), ``ndsc_audit_rejected_total`` or
    ``ndsc_auth_failures_total``; a refused call never affects other nodes' streams.
    """

    def __init__(self, bundle: Bundle, pipeline: DecodePipeline, metrics: DecoderMetrics,
                 authorize: Authorizer | None = None, device: str = "cpu", journal: Journal | None = None, *,
                 limits: StreamLimits = StreamLimits(), max_frame_area: int = MAX_FRAME_AREA, max_groups: int = 256,
                 max_streams: int = 1024, max_subscribers: int = 64, stream_idle: float = 60.0,
                 log_limiter: LogLimiter | None = None,
                 ack_interval: float = 0.025):
        self.bundle = bundle
        self.pipeline = pipeline
        self.metrics = metrics
        self.authorize = authorize
        self.sessions = SessionTable(bundle, authorize, max_frame_area, max_groups)
        self.limits = limits
        self.max_streams = max_streams
        self.max_subscribers = max_subscribers
        self.stream_idle = stream_idle
        self.ack_interval = ack_interval  # seconds between one stream's Acks at least (pacing)
        self.streams = 0  # open Uplink handlers, header read or not
        self.max_frame_area = max_frame_area
        self.device = device
        self.journal = journal or Journal(None)
        self.draining = False
        # refusals are caused by clients: their log lines are bounded per reason (counted beyond)
        self.log_limiter = log_limiter or LogLimiter()
        self._accepted: dict[tuple[str, int], list[int]] = {}
        self._check_executor = ThreadPoolExecutor(1, thread_name_prefix="ndsc-check")
        self._frames_vary = any(s.whole_frames for s in bundle.sources)

    def restore_sessions(self) -> int:
        rows = self.journal.sessions()
        self.sessions.restore([NodeSession(r.group, r.node, r.source, r.last_seq, False, unsigned64(r.incarnation),
                                           r.last_window) for r in rows])
        return len(rows)

    async def _refuse(self, context, refused: StreamRefused, rpc: str = "Uplink") -> None:
        if refused.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            self.metrics.auth_failures.labels(rpc, refused.reason).inc()
        if rpc == "Uplink":
            self.metrics.streams_rejected.labels(refused.reason).inc()
        elif rpc == "Audit":
            self.metrics.audit_rejected.labels(refused.reason).inc()
        elif refused.reason in ("bad_group", "too_many_subscribers"):  # Subscribe's group name, or one too many
            self.metrics.bad_requests.labels(rpc, refused.reason).inc()
        allowed, suppressed = self.log_limiter.allow(refused.reason)
        if allowed:
            more = f" ({suppressed} more {refused.reason!r} refusals not logged)" if suppressed else ""
            log.warning("refused %s: %s (%s)%s", rpc, refused.message, refused.code.name, more)
        else:
            self.metrics.log_suppressed.labels(refused.reason).inc()
        await context.abort(refused.code, refused.message)

    def _entropy_decode(self, source: int, frames: Sequence[FrameData], frame_shape: tuple[int, ...],
                        quality: str = "") -> tuple[list[np.ndarray | None], tuple[int, str] | None]:
        """Each whole payload's symbols (with the tables of the stream's operating point
        ``quality``; kept, so the decode step never decodes it again), up to the first that does
        not entropy-decode to the latent shape, and that one's (index, error).

        Chunks are not decoded here (only their joined payload can be): an undecodable
        chunked payload is found at decoding, counted, and its source estimated."""
        symbols: list[np.ndarray | None] = []
        for k, f in enumerate(frames):
            if f.chunks > 1:
                symbols.append(None)
                continue
            try:
                symbols.append(self.pipeline.runtime.entropy_decode(source, f.payload, frame_shape, quality or None))
            except EntropyCodingError as exc:
                return symbols, (k, str(exc))
        return symbols, None

    def _first_shape_conflict(self, session: NodeSession,
                              frames: Sequence[FrameData]) -> tuple[FrameData, StreamRefused] | None:
        """Refusal for the first frame whose window holds another frame shape from another source."""
        aligner = self.pipeline.aligner(session.group)
        for f in frames:
            other = aligner.shape_conflict(f.window, session.source_index, session.frame_shape)
            if other is not None:
                return f, StreamRefused(
                    grpc.StatusCode.FAILED_PRECONDITION, "frame_shape_mismatch",
                    f"frame seq {f.seq} (window {f.window}) has shape {session.frame_shape} but another source of "
                    f"group {session.group!r} sent {other} for that window; held up to seq {f.seq - 1}")
        return None

    async def _next(self, messages):
        """The stream's next message, or a refusal when none comes within ``stream_idle`` seconds
        (a silent stream would hold its source, and a stream slot, forever)."""
        try:
            async with asyncio.timeout(self.stream_idle):
                return await messages.__anext__()
        except TimeoutError:
            raise self._idle_refusal() from None

    def _idle_refusal(self) -> StreamRefused:
        return StreamRefused(grpc.StatusCode.DEADLINE_EXCEEDED, "idle_timeout",
                             f"no uplink message for {self.stream_idle:g} s: stream closed, its source released "
                             "(reconnect when there is data)")

    def evict_idle_groups(self, idle: float, now: float | None = None) -> list[str]:
        """Forget groups with no open stream, no held window and no frame for ``idle`` seconds."""
        now = time.monotonic() if now is None else now
        candidates = set(self.sessions.idle_groups(now - idle))
        with_sessions = set(self.sessions.groups())
        candidates |= {g for g in self.pipeline.aligners if g not in with_sessions}
        evicted = []
        for group in sorted(candidates):
            aligner = self.pipeline.aligners.get(group)
            if aligner is not None and (aligner.pending or now - aligner.touched < idle):
                continue
            self.sessions.evict(group)
            self.pipeline.forget(group)
            for key in [k for k in self._accepted if k[0] == group]:
                del self._accepted[key]
            self.metrics.forget_group(group)
            evicted.append(group)
        if evicted:
            self.metrics.groups_evicted.inc(len(evicted))
            log.info("evicted %d idle groups", len(evicted))
        self.metrics.groups.set(len(set(self.sessions.groups()) | set(self.pipeline.aligners)))
        return evicted

    async def Uplink(self, request_iterator, context):
        self.streams += 1
        try:
            async for ack in self._uplink(request_iterator.__aiter__(), context):
                yield ack
        finally:
            self.streams -= 1

    async def _uplink(self, messages, context):
        receiver = UplinkReceiver(self.sessions, self.limits)
        try:
            first = await self._next(messages)
        except StopAsyncIteration:
            return
        except StreamRefused as refused:
            await self._refuse(context, refused)
        if isinstance(first, BadRequest):
            await self._refuse(context, first.refused)
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "decoder is shutting down")
        if self.streams > self.max_streams:
            await self._refuse(context, StreamRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_streams",
                f"the decoder serves at most {self.max_streams} uplink streams at once"))
        try:
            first_ack = receiver.open(first, context.invocation_metadata() or ())
        except StreamRefused as refused:
            await self._refuse(context, refused)
        session = receiver.session
        if receiver.restarted:
            self.metrics.node_restarts.labels(session.group, session.node_id).inc()
        group, node, source = session.group, session.node_id, session.source_index
        series = StreamSeries(self.metrics, group, node, source, session.quality)
        series.messages.inc()
        series.protocol_bytes.inc(protocol_bytes(first))
        self.metrics.edge_flush_interval.labels(group, node, str(source)).set(first.header.flush_interval_s)
        session.touched = time.monotonic()
        self.pipeline.aligner(group)  # the group exists from its first stream (counted, evictable)
        active = self.metrics.active_streams.labels(group)  # resolved once: inc and dec hit one series
        active.inc()
        log.info("uplink open: group=%s node=%s source=%d quality=%s resume after seq %d", group, node, source,
                 session.quality or "-", session.last_seq)
        inbox = ReadAhead(messages, self.stream_idle, size=_message_size)
        acked_at = time.monotonic()
        feedback = SyndromeFeedback.open(self.pipeline, session, series, self._count_accepted)
        # a syndrome source's Acks also carry the decoder's pending requests for more bits
        answer = feedback.ack if feedback else (lambda ack: ack)
        ended = False
        try:
            yield answer(first_ack)
            while not ended:
                batch = await self._take_or_refuse(context, inbox, feedback)
                if batch is None:  # requests for the edge and no message: an Ack carries them at once
                    series.flush()
                    yield answer(receiver.ack())
                    continue
                if not batch:
                    break
                # every message already here: held together (one journal commit), one cumulative Ack
                await self._take_batch(context, receiver, feedback, batch, series)
                # Ack pacing: at most one Ack per ack_interval per stream. Messages arriving before
                # it is due are held as they come (their frames reach the aligner at once; only the
                # Ack waits), so a fast node costs one Ack write, on both ends, per interval instead
                # of one per message. A node slower than that is answered at once.
                while (due := acked_at + self.ack_interval - time.monotonic()) > 0:
                    batch = await self._take_or_refuse(context, inbox, feedback, within=due)
                    if batch is None:  # the Ack is due, or binning requests (they never wait for the pace)
                        break
                    if not batch:
                        ended = True
                        break
                    await self._take_batch(context, receiver, feedback, batch, series)
                series.flush()  # counted before acknowledged
                yield answer(receiver.ack())
                acked_at = time.monotonic()
        finally:
            series.flush()
            await inbox.close()
            if feedback:
                feedback.close()
            receiver.close()
            session.touched = time.monotonic()
            active.dec()

    async def _take_or_refuse(self, context, inbox: ReadAhead, feedback: SyndromeFeedback | None = None,
                              within: float | None = None) -> list | None:
        """The stream's messages already here (waiting for one), ``[]`` at its end; a stream silent
        for ``stream_idle`` seconds is refused. None when nothing came ``within`` seconds, or (a
        syndrome source's stream, ``feedback``) when binning requests wait to be sent before any
        message came."""
        try:
            return await (feedback.take(inbox, within) if feedback else inbox.take(within))
        except IdleStream:
            await self._refuse(context, self._idle_refusal())
            raise  # unreachable: _refuse aborts

    async def _take_batch(self, context, receiver: UplinkReceiver, feedback: SyndromeFeedback | None,
                          batch: list, series: StreamSeries) -> None:
        """Hand the batch's syndrome replies to ``feedback``, then check and hold its frames (a
        direct source's stream has no feedback: a reply there is refused by the receiver's check)."""
        if feedback is not None:
            batch = await split_replies(feedback, context, batch, self._refuse)
        await self._take_messages(context, receiver, batch, series)

    async def _take_messages(self, context, receiver: UplinkReceiver, messages: Sequence,
                             series: StreamSeries) -> None:
        """Check messages' frames in order, hold the good ones together (one journal commit),
        and refuse the stream (abort) at the first bad one: the frames before it stay held."""
        frames: list[FrameData] = []
        symbols: list[np.ndarray | None] = []
        tally = _Tally()
        refusal = None
        for message in messages:
            refusal = await self._check_message(receiver, message, series, frames, symbols, tally)
            if refusal is not None:
                break
        tally.count(series)
        if frames:
            try:
                await self._hold(receiver, frames, symbols, series)
            except (sqlite3.Error, OverflowError) as exc:  # nothing was acked: the edge resends
                log.exception("journaling frames of group %r failed", receiver.session.group)
                refusal = StreamRefused(grpc.StatusCode.UNAVAILABLE, "journal_failed",
                                        f"the decoder could not make frames durable ({exc}); retry")
        if refusal is _DRAINING:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "decoder is shutting down")
        if refusal is not None:
            await self._refuse(context, refusal)

    async def _check_message(self, receiver: UplinkReceiver, message, series: StreamSeries,
                             frames: list[FrameData], symbols: list[np.ndarray | None],
                             tally: "_Tally") -> StreamRefused | None:
        """Check one later message; append its good frames (and their entropy-decoded symbols) to
        ``frames``/``symbols``, which continue from earlier messages not yet held, and its counts
        to ``tally``. Returns the refusal of its first bad frame (or of the message), else None."""
        session = receiver.session
        if isinstance(message, BadRequest):
            return message.refused
        if self.draining:
            return _DRAINING
        session.touched = time.monotonic()
        tally.messages += 1
        try:
            screened = receiver.screen(message, time.time(), frames[-1] if frames else None)
        except StreamRefused as refused:
            return refused
        payload = screened.payload_bytes
        tally.payload_bytes += payload
        tally.protocol_bytes += message.ByteSize() - payload + GRPC_MESSAGE_PREFIX_BYTES
        series.frames_per_message.observe(screened.message_frames)
        for status, n in screened.counts.items():
            tally.frames[status] = tally.frames.get(status, 0) + n
        new, refusal = screened.frames, screened.refusal
        # only whole-frame streams announce a shape another source's could contradict (the others'
        # shapes are the bundle's, checked at open)
        conflict = self._first_shape_conflict(session, new) if new and self._frames_vary else None
        if conflict is not None:
            frame, refusal = conflict
            tally.frames["frame_shape_mismatch"] = tally.frames.get("frame_shape_mismatch", 0) + 1
            new = new[:new.index(frame)]
        if new:
            check = (session.source_index, new, session.frame_shape, session.quality)
            if sum(len(f.payload) for f in new) <= INLINE_DECODE_BYTES:
                decoded, bad = self._entropy_decode(*check)
            else:  # a large payload (an image frame) would stall every other stream
                decoded, bad = await asyncio.get_running_loop().run_in_executor(
                    self._check_executor, self._entropy_decode, *check)
            if bad is not None:
                k, error = bad
                # a syndrome source's payload that does not fit its binning record: bad_syndrome
                reason = "bad_syndrome" if self.bundle.sources[session.source_index].syndrome else "undecodable"
                tally.frames[reason] = tally.frames.get(reason, 0) + 1
                refusal = StreamRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, reason,
                    f"frame seq {new[k].seq} (window {new[k].window}): payload does not decode to "
                    f"source {session.source_index}'s latents ({error}); held up to seq {new[k].seq - 1}")
                new = new[:k]
            frames.extend(new)
            symbols.extend(decoded[:len(new)])
        return refusal

    async def _hold(self, receiver: UplinkReceiver, frames: Sequence[FrameData],
                    symbols: Sequence[np.ndarray | None], series: StreamSeries) -> None:
        """Make checked frames durable (journal), advance the session, hand them to the aligner."""
        if not frames:
            return
        session = receiver.session
        group, node, source = session.group, session.node_id, session.source_index
        if self.journal.enabled:
            row = SessionRow(group, node, source, session.incarnation, frames[-1].seq, frames[-1].window)
            t0 = time.perf_counter()
            await self.journal.commit_frames(row, source, frames, session.frame_shape, session.quality)
            self.metrics.journal_seconds.labels("frames").observe(time.perf_counter() - t0)
        fresh, lost = receiver.commit(frames)
        if len(fresh) < len(frames):  # another stream of this node held some of them meanwhile
            kept = {id(f) for f in fresh}
            symbols = [s for f, s in zip(frames, symbols) if id(f) in kept]
            frames = fresh
        if lost:
            series.add(series.frames("lost"), lost)
        series.add(series.frames("accepted"), len(frames))
        # bytes for every chunk, a window (and its samples) once, at its first chunk
        windows = sum(1 for f in frames if f.chunk == 0)
        nbytes = sum(len(f.payload) for f in frames)
        per_window = math.prod(session.frame_shape) if session.frame_shape else None
        self._count_accepted(group, source, nbytes, windows * per_window if per_window else None, series, windows)
        series.add(series.quality_windows, windows)
        series.add(series.quality_payload_bytes, nbytes)
        refused = []
        pipeline = self.pipeline
        shape, quality = session.frame_shape or None, session.quality or None
        for f, sym in zip(frames, symbols):
            held = pipeline.hold(group, f.window, source, f.payload, f.capture_us, chunk=f.chunk, chunks=f.chunks,
                                 shape=shape, quality=quality, symbols=sym)
            if held.released:
                await pipeline.release(held.released)
            status = held.status
            if status in ("late", "shape_mismatch", "bad_chunk"):  # not held: the journaled copy is dead
                refused.append((group, f.window, source))
            if status in ("shape_mismatch", "bad_chunk"):  # raced another source's frame of the same window,
                # or a chunk count that differs from the window's held chunks: that source is estimated
                series.add(series.frames("frame_shape_mismatch" if status == "shape_mismatch" else "bad_chunk"))
        if refused and self.journal.enabled:
            await self.journal.run(self.journal.forget_frames, refused)

    def _count_accepted(self, group: str, source: int, nbytes: int, samples: int | None,
                        series: StreamSeries, windows: int = 1) -> None:
        """Bytes of accepted frames and the input samples they add (None: ``windows`` bundle windows)."""
        if samples is None:
            samples = windows * self.bundle.sources[source].samples_per_window
        sums = self._accepted.setdefault((group, source), [0, 0])  # payload bytes, samples
        sums[0] += nbytes
        sums[1] += samples
        series.add(series.accepted_samples, samples)
        series.add(series.accepted_payload_bytes, nbytes)
        series.rate_from(sums)

    async def _check_call(self, request, context, rpc: str, check=None) -> None:
        """Refuse a malformed request, or (with credentials configured) a caller ``check`` refuses."""
        if isinstance(request, BadRequest):
            await self._refuse(context, request.refused, rpc)
        if check is not None and hasattr(self.authorize, "check_reader"):
            try:
                check(self.authorize, context.invocation_metadata() or ())
            except StreamRefused as refused:
                await self._refuse(context, refused, rpc)

    async def _check_subscribe(self, request, context, rpc: str) -> None:
        await self._check_call(request, context, rpc, lambda a, md: a.check_reader(request.group, md))
        problem = request.group and name_problem(request.group, "group")
        if problem:  # "" subscribes to every group
            await self._refuse(context, StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_group", problem), rpc)
        if self.pipeline.broadcaster.subscribers >= self.max_subscribers:  # each costs work per window
            await self._refuse(context, StreamRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_subscribers",
                f"the decoder serves at most {self.max_subscribers} Subscribe streams at once"), rpc)

    async def Subscribe(self, request, context):
        await self._check_subscribe(request, context, "Subscribe")
        queue = self.pipeline.broadcaster.add(request.group, request.include_samples, request.samples_f32le)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                for message in item:
                    yield message
        finally:
            self.pipeline.broadcaster.remove(queue)

    async def SubscribeBatches(self, request, context):
        """Subscribe, with every window queued while the previous message was sent joined into one
        ReconstructionBatch (up to the message size limit)."""
        await self._check_subscribe(request, context, "SubscribeBatches")
        broadcaster = self.pipeline.broadcaster
        queue = broadcaster.add(request.group, request.include_samples, request.samples_f32le)
        waiting: list[bytes] = []  # serialized Reconstructions not sent yet, in order
        ended = False
        try:
            while waiting or not ended:
                if not waiting:
                    item = await queue.get()
                    if item is None:
                        return
                    waiting.extend(item)
                while not ended and not queue.empty():
                    item = queue.get_nowait()
                    if item is None:
                        ended = True
                    else:
                        waiting.extend(item)
                message, waiting = pack_reconstruction_batch(waiting, broadcaster.max_message_bytes)
                yield message
        finally:
            broadcaster.remove(queue)

    async def Audit(self, request, context):
        await self._check_call(request, context, "Audit", lambda a, md: a.check_node(
            request.group or "default", request.node_id, request.source_index, md))
        source = request.source_index
        reason = None
        problem = name_problem(request.group or "default", "group") or name_problem(request.node_id, "node_id")
        if problem:
            reason, code, text = "bad_name", grpc.StatusCode.INVALID_ARGUMENT, problem
        elif request.bundle_id != self.bundle.bundle_id:
            reason, code, text = "bundle_mismatch", grpc.StatusCode.FAILED_PRECONDITION, "audit for another bundle"
        elif source >= self.bundle.n_sources or not self._audit_shape_ok(source, tuple(request.shape)):
            reason, code, text = "bad_shape", grpc.StatusCode.INVALID_ARGUMENT, "audit source/shape does not match"
        elif len(request.samples_f32le) != 4 * math.prod(request.shape):
            reason, code, text = "bad_size", grpc.StatusCode.INVALID_ARGUMENT, "audit samples do not fill the shape"
        if reason:
            self.metrics.audit_rejected.labels(reason).inc()
            await context.abort(code, text)
        group = request.group or "default"
        self.metrics.audit_bytes.labels(group, request.node_id, str(source)).inc(
            request.ByteSize() + GRPC_MESSAGE_PREFIX_BYTES)
        raw = np.frombuffer(request.samples_f32le, dtype="<f4").reshape(tuple(request.shape))
        return pb.AuditReply(matched=self.pipeline.audits.add_raw(group, request.window, source, raw))

    def _audit_shape_ok(self, source: int, shape: tuple[int, ...]) -> bool:
        """The bundle's window shape, or (whole-frame bundles) a frame (C, H, W) within the area limit."""
        info = self.bundle.sources[source]
        if shape == info.input_shape:
            return True
        return (info.whole_frames and len(shape) == 3 and shape[0] == info.input_shape[0] and min(shape[1:]) >= 1
                and shape[1] * shape[2] <= self.max_frame_area)

    async def GetModelInfo(self, request, context):
        await self._check_call(request, context, "GetModelInfo", lambda a, md: a.check_any(md))
        b = self.bundle
        return pb.ModelInfo(
            bundle_id=b.bundle_id, modality=b.modality, sample_rate=b.sample_rate or 0.0,
            sources=[pb.SourceDescription(name=s.name, channel_names=list(s.channel_names),
                                          input_shape=list(s.input_shape), latent_shape=list(s.latent_shape),
                                          frame_stride=s.frame_stride if s.whole_frames else 0,
                                          quality_points=list(s.quality_names), default_quality=s.default_quality or "",
                                          coding=s.coding)
                     for s in b.sources],
            device=self.device, deadline_s=self.pipeline.deadline, max_batch=self.pipeline.max_batch,
            groups=sorted(set(self.sessions.groups()) | set(self.pipeline.aligners)))
