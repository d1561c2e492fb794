"""The fusion-decoder gRPC service (grpc.aio): uplinks → aligner → joint decoding → sinks.

A thin servicer over plain logic: :mod:`fusion_decoder.sessions` (header checks, crc,
dedup), :mod:`fusion_decoder.aligner` (windows across nodes) and
:class:`fusion_decoder.runtime.JointDecoderRuntime` (entropy + joint decoding).
Decoding runs in one worker thread so the event loop keeps serving streams.

Typical use::

    server = DecoderServer(load_bundle(path), listen="127.0.0.1:0", registry=CollectorRegistry())
    port = await server.start()
    ...
    await server.stop()          # drains held windows to subscribers first
"""
from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Sequence

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from fusion_decoder.aligner import AlignedWindow, Aligner
from fusion_decoder.journal import Journal, SessionRow, unsigned64
from fusion_decoder.metrics import DecoderMetrics
from fusion_decoder.runtime import JointDecoderRuntime
from fusion_decoder.sessions import MAX_FRAME_AREA, Authorizer, NodeSession, SessionTable, StreamRefused
from ndsc.bundle import Bundle
from ndsc.entropy import EntropyCodingError
from ndsc.wire import (GRPC_MESSAGE_PREFIX_BYTES, MAX_MESSAGE_BYTES, SERVICE_NAME, FrameData, channel_options, crc32,
                       pb, pb_grpc, payload_bytes, protocol_bytes, unpack_batch)
from ndsc.wire.limits import MAX_SEQ, MAX_WINDOW_INDEX, name_problem
from ndsc.wire.reflection import enable_reflection
from ndsc.wire.tls import server_credentials

log = logging.getLogger("ndsc.decoder")

#: default largest chunk count one window's payload may announce
MAX_CHUNKS = 4096
#: bytes of a Reconstruction message kept for everything but its samples
_REPLY_HEADROOM = 64 * 1024


@dataclass
class Decoded:
    """One reconstructed window."""

    window: AlignedWindow
    x_hat: np.ndarray  # (N, C, *S)
    present: np.ndarray  # (N,) bool
    reconstructed_time: float

    def message(self, include_samples: bool) -> pb.Reconstruction:
        """The whole window in one message (see :meth:`messages` for the size-limited form)."""
        return self.messages(include_samples)[0]

    def messages(self, include_samples: bool, max_samples: int | None = None) -> list[pb.Reconstruction]:
        """The window as Reconstructions of at most ``max_samples`` samples each (same metadata,
        consecutive ``sample_offset``), so a whole image frame fits under the message limit."""
        w = self.window
        meta = dict(group=w.group, window=w.window, shape=list(self.x_hat.shape),
                    present=[bool(p) for p in self.present],
                    payload_bytes=[len(p) if p is not None else 0 for p in w.payloads],
                    capture_time=[c / 1e6 if c is not None else 0.0 for c in w.capture_us],
                    reconstructed_time=self.reconstructed_time)
        if not include_samples:
            return [pb.Reconstruction(**meta)]
        flat = self.x_hat.ravel()
        step = max(1, max_samples or flat.size)
        return [pb.Reconstruction(**meta, samples=flat[k:k + step].tolist(), sample_offset=k)
                for k in range(0, max(flat.size, 1), step)]


class Broadcaster:
    """Subscribe streams: one bounded queue each; a slow subscriber loses its oldest windows
    (counted in ``ndsc_subscriber_dropped_total``), never stalls decoding or other subscribers."""

    def __init__(self, metrics: DecoderMetrics, queue_size: int = 4096, max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.metrics = metrics
        self.queue_size = queue_size
        # float32 samples per message, leaving room for the metadata (packed floats: 4 bytes each)
        self.max_samples = max(1, (max_message_bytes - _REPLY_HEADROOM) // 4)
        self._subs: list[tuple[str, bool, asyncio.Queue]] = []

    def add(self, group: str, include_samples: bool) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self._subs.append((group, include_samples, q))
        self.metrics.subscribers.set(len(self._subs))
        return q

    def remove(self, q: asyncio.Queue) -> None:
        self._subs = [s for s in self._subs if s[2] is not q]
        self.metrics.subscribers.set(len(self._subs))

    def publish(self, item: Decoded) -> None:
        # one queue entry per window (its messages): drop-oldest never tears a window apart
        cache: dict[bool, list[pb.Reconstruction]] = {}
        for group, include, q in self._subs:
            if group and group != item.window.group:
                continue
            if include not in cache:
                cache[include] = item.messages(include, self.max_samples)
            if q.full():
                q.get_nowait()  # drop-oldest: a late reader wants the newest windows
                self.metrics.subscriber_dropped.inc()
            q.put_nowait(cache[include])

    def close(self) -> None:
        """End every Subscribe stream (after the last drained window)."""
        for _, _, q in self._subs:
            while True:
                try:
                    q.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    q.get_nowait()  # the end marker matters more than one old window


class AuditBook:
    """Matches audited raw windows with their reconstructions; keeps running distortion sums.

    Audits and reconstructions may arrive in either order, so each side waits (bounded)
    for the other. Distortion is over all audited samples of a (group, source):
    RMSE = √(SSE/n), PRD = 100·√(SSE/Σx²), PSNR = 10·log10(range²/MSE).
    """

    def __init__(self, metrics: DecoderMetrics, keep: int = 128):
        self.metrics = metrics
        self.keep = keep
        self._recent: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._waiting: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._sums: dict[tuple[str, int], list[float]] = {}  # sse, sum x², n, min, max

    def add_reconstruction(self, group: str, window: int, x_hat: np.ndarray,
                           present: np.ndarray | None = None) -> None:
        present = np.ones(x_hat.shape[0], bool) if present is None else present
        self._recent[(group, window)] = (x_hat, present)
        _trim(self._recent, self.keep)
        for source in range(x_hat.shape[0]):
            raw = self._waiting.pop((group, window, source), None)
            if raw is not None:
                self._score(group, source, raw, x_hat[source], not present[source])

    def add_raw(self, group: str, window: int, source: int, raw: np.ndarray) -> bool:
        recent = self._recent.get((group, window))
        if recent is None:
            self._waiting[(group, window, source)] = raw
            _trim(self._waiting, self.keep)
            return False
        x_hat, present = recent
        self._score(group, source, raw, x_hat[source], not present[source])
        return True

    def forget(self, group: str) -> None:
        """Drop every held reconstruction, audit and distortion sum of ``group``."""
        for d in (self._recent, self._waiting, self._sums):
            for key in [k for k in d if k[0] == group]:
                del d[key]

    def _score(self, group: str, source: int, x: np.ndarray, x_hat: np.ndarray, estimated: bool = False) -> None:
        """Distortion sums kept apart for decoded and for estimated (node missing) sources."""
        if x.shape != x_hat.shape:  # an audit of another frame size than the window decoded
            self.metrics.audit_rejected.labels("shape_differs").inc()
            return
        x64, err = x.astype(np.float64), x.astype(np.float64) - x_hat.astype(np.float64)
        s = self._sums.setdefault((group, source, estimated), [0.0, 0.0, 0, math.inf, -math.inf])
        s[0] += float(np.sum(err**2))
        s[1] += float(np.sum(x64**2))
        s[2] += x64.size
        s[3], s[4] = min(s[3], float(x64.min())), max(s[4], float(x64.max()))
        mse = s[0] / s[2]
        labels = (group, str(source))
        if estimated:
            self.metrics.audit_estimated_windows.labels(*labels).inc()
            self.metrics.audit_estimated_rmse.labels(*labels).set(math.sqrt(mse))
            self.metrics.audit_estimated_prd.labels(*labels).set(100 * math.sqrt(s[0] / s[1]) if s[1] else math.inf)
            return
        self.metrics.audit_windows.labels(*labels).inc()
        self.metrics.audit_rmse.labels(*labels).set(math.sqrt(mse))
        self.metrics.audit_prd.labels(*labels).set(100 * math.sqrt(s[0] / s[1]) if s[1] else math.inf)
        peak = (s[4] - s[3]) or 1.0
        self.metrics.audit_psnr.labels(*labels).set(10 * math.log10(peak**2 / mse) if mse else math.inf)


def _trim(d: OrderedDict, keep: int) -> None:
    while len(d) > keep:
        d.popitem(last=False)


class DecodePipeline:
    """Aligners per group → bounded queue → batched decoding in a worker thread → sinks."""

    def __init__(self, runtime: JointDecoderRuntime, metrics: DecoderMetrics, deadline: float, max_batch: int,
                 journal: Journal | None = None, subscriber_queue: int = 4096,
                 max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.runtime = runtime
        self.metrics = metrics
        self.deadline = deadline
        self.max_batch = max_batch
        self.journal = journal or Journal(None)
        self.aligners: dict[str, Aligner] = {}
        self.broadcaster = Broadcaster(metrics, subscriber_queue, max_message_bytes)
        self.audits = AuditBook(metrics)
        self._queue: asyncio.Queue[AlignedWindow] = asyncio.Queue(max(8 * max_batch, 256))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ndsc-decode")
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._decode_loop()), asyncio.create_task(self._expiry_loop())]

    def aligner(self, group: str) -> Aligner:
        aligner = self.aligners.get(group)
        if aligner is None:
            aligner = self.aligners[group] = Aligner(group, self.runtime.n_sources, self.deadline)
            aligner.touched = time.monotonic()
        return aligner

    def forget(self, group: str) -> None:
        """Drop an evicted group's aligner and audit state (it holds no pending window)."""
        self.aligners.pop(group, None)
        self.audits.forget(group)

    async def restore(self) -> int:
        """Re-hold the journal's frames of not-yet-decoded windows; returns how many."""
        # at start, before serving: reading synchronously (on the journal thread) is fine
        for group, windows in self.journal.decoded_windows().items():
            self.aligner(group).mark_released(windows)
        held = self.journal.held_frames()
        for f in held:
            await self.add(f.group, f.window, f.source, f.payload, f.capture_us, chunk=f.chunk, chunks=f.chunks,
                           shape=f.shape or None, quality=f.quality or None)
        self.metrics.journal_restored_frames.inc(len(held))
        return len(held)

    async def add(self, group: str, window: int, source: int, payload: bytes, capture_us: int, *, chunk: int = 0,
                  chunks: int = 1, shape: tuple[int, ...] | None = None, quality: str | None = None) -> str:
        aligner = self.aligner(group)
        result = aligner.add(window, source, payload, capture_us, time.monotonic(), chunk=chunk, chunks=chunks,
                             shape=shape, quality=quality)
        if result.status == "late":
            self.metrics.aligner_late.labels(group, str(source)).inc()
        for w in result.released:
            await self._enqueue(w)
        return result.status

    async def _enqueue(self, w: AlignedWindow) -> None:
        self.metrics.aligner_windows.labels(w.group, "complete" if w.complete else "partial").inc()
        self.metrics.aligner_wait.labels(w.group).observe(w.released - w.first_arrival)
        for i in w.missing:
            self.metrics.aligner_missing.labels(w.group, str(i)).inc()
        for i in w.incomplete:
            self.metrics.incomplete_chunks.labels(w.group, str(i)).inc()
        await self._queue.put(w)

    async def _expiry_loop(self) -> None:
        tick = min(self.deadline / 4, 0.25)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for aligner in list(self.aligners.values()):
                for w in aligner.expire(now):
                    await self._enqueue(w)

    async def _decode_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._decode_and_publish(loop, batch)
            except Exception:  # a bug outside the per-window guards must not kill the service
                log.exception("decoding %d windows failed", len(batch))
                self.metrics.window_failures.labels("decode").inc(len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _decode_and_publish(self, loop: asyncio.AbstractEventLoop, batch: list[AlignedWindow]) -> None:
        """Decode, journal and publish one batch; a window that fails any step is counted in
        ``ndsc_window_failures_total{stage}`` and dropped alone, never with its batch."""
        t0 = time.perf_counter()
        try:
            x_hat, present = await loop.run_in_executor(self._executor, self._decode, batch)
        except Exception:
            # one window broke the batch: decode them one by one so only that one is lost
            log.exception("decoding a batch of %d windows failed; decoding them one by one", len(batch))
            kept, x_hat, present = [], [], []
            for w in batch:
                try:
                    xs, ps = await loop.run_in_executor(self._executor, self._decode, [w])
                except Exception:
                    self.metrics.window_failures.labels("decode").inc()
                    continue
                kept.append(w)
                x_hat.append(xs[0])
                present.append(ps[0])
            batch = kept
        self.metrics.decode_seconds.observe(time.perf_counter() - t0)
        self.metrics.decode_batch_size.observe(len(batch))
        if self.journal.enabled and batch:
            # durable before published: a restart never publishes a window twice
            t0 = time.perf_counter()
            fresh = await self._record_decoded(batch, present)
            self.metrics.journal_seconds.labels("decoded").observe(time.perf_counter() - t0)
            keep = [k for k, f in enumerate(fresh) if f]
            batch, x_hat, present = [batch[k] for k in keep], [x_hat[k] for k in keep], [present[k] for k in keep]
        self._publish(batch, x_hat, present)

    async def _record_decoded(self, batch: Sequence[AlignedWindow], present: Sequence[np.ndarray]) -> list[bool]:
        """Journal the decoded windows in one transaction; if that fails, one by one, so a window
        the journal refuses is counted and not published (its frames stay held for a restart)."""
        rows = [(w.group, w.window, p) for w, p in zip(batch, present)]
        try:
            return await self.journal.run(self.journal.record_decoded, rows)
        except Exception:
            log.exception("journaling %d decoded windows failed; journaling them one by one", len(rows))
        fresh = []
        for row in rows:
            try:
                fresh.extend(await self.journal.run(self.journal.record_decoded, [row]))
            except Exception:
                self.metrics.window_failures.labels("journal").inc()
                fresh.append(False)
        return fresh

    def _decode(self, batch: Sequence[AlignedWindow]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per window (in batch order) x_hat (N, C, *S) and present (N,): windows of one frame
        shape are decoded together (whole frames of several sizes cannot share a tensor)."""
        x_hat: list = [None] * len(batch)
        present: list = [None] * len(batch)
        by_shape: dict = {}
        for k, w in enumerate(batch):
            by_shape.setdefault(w.shape, []).append(k)
        for shape, ks in by_shape.items():
            xs, ps = self._decode_shape([batch[k] for k in ks], shape)
            for j, k in enumerate(ks):
                x_hat[k], present[k] = xs[j], ps[j]
        return x_hat, present

    def _decode_shape(self, batch: Sequence[AlignedWindow],
                      shape: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
        payloads = [list(w.payloads) for w in batch]
        qualities = [list(w.qualities) for w in batch]  # each source at its stream's operating point
        try:
            return self.runtime.decode_batch(payloads, shape, qualities)
        except EntropyCodingError:
            # A payload with a valid crc that does not decode (an encoder/bundle bug or a
            # forged frame): decode the rest, estimate that source as if missing.
            for w, row in zip(batch, payloads):
                for i, p in enumerate(row):
                    if p is None:
                        continue
                    try:
                        self.runtime.entropy_decode(i, p, shape, w.qualities[i])
                    except EntropyCodingError:
                        row[i] = None
                        self.metrics.undecodable.labels(w.group, str(i)).inc()
            return self.runtime.decode_batch(payloads, shape, qualities)

    def _publish(self, batch: Sequence[AlignedWindow], x_hat: Sequence[np.ndarray],
                 present: Sequence[np.ndarray]) -> None:
        now = time.time()
        for b, w in enumerate(batch):
            try:
                item = Decoded(w, x_hat[b], present[b], now)
                self.broadcaster.publish(item)
            except Exception:  # e.g. a field out of protobuf range: this window only
                log.exception("publishing window %d of group %r failed", w.window, w.group)
                self.metrics.window_failures.labels("publish").inc()
                continue
            for c in w.capture_us:
                if c:  # 0: unknown (outside the decoder's sane capture window), never a latency
                    self.metrics.capture_to_reconstruction.labels(w.group).observe(max(0.0, now - c / 1e6))
            self.metrics.reconstructions.labels(w.group).inc()
            for i in np.flatnonzero(~present[b]):
                self.metrics.estimated_sources.labels(w.group, str(i)).inc()
            self.audits.add_reconstruction(w.group, w.window, x_hat[b], present[b])

    async def drain(self) -> None:
        """Release every held window, decode what is queued, end Subscribe streams."""
        now = time.monotonic()
        for aligner in list(self.aligners.values()):
            for w in aligner.drain(now):
                await self._enqueue(w)
        await self._queue.join()
        self.broadcaster.close()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)
        self.journal.close()


class BadRequest:
    """What a request deserializer returns instead of raising, so the handler can refuse it
    with a precise status and a counted reason (grpc's own failure would be an uncounted INTERNAL)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str):
        self.refused = StreamRefused(code, reason, message)


def tolerant_deserializer(message_type, max_bytes: int, metrics: DecoderMetrics, rpc: str):
    """``message_type.FromString`` that turns malformed or oversized input into a :class:`BadRequest`."""

    def parse(raw: bytes):
        if len(raw) > max_bytes:
            metrics.bad_requests.labels(rpc, "oversized").inc()
            return BadRequest(grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized",
                              f"message of {len(raw)} bytes exceeds the limit of {max_bytes}")
        try:
            return message_type.FromString(raw)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            metrics.bad_requests.labels(rpc, "malformed").inc()
            return BadRequest(grpc.StatusCode.INVALID_ARGUMENT, "malformed",
                              f"malformed {message_type.__name__}: {exc}")

    return parse


def add_servicer(servicer: "FusionDecoderServicer", server, max_bytes: int, metrics: DecoderMetrics) -> None:
    """Like the generated ``add_FusionDecoderServicer_to_server``, with tolerant deserializers."""
    def des(t, rpc):
        return tolerant_deserializer(t, max_bytes, metrics, rpc)

    handlers = {
        "Uplink": grpc.stream_stream_rpc_method_handler(
            servicer.Uplink, request_deserializer=des(pb.UplinkMessage, "Uplink"),
            response_serializer=pb.Ack.SerializeToString),
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            servicer.Subscribe, request_deserializer=des(pb.SubscribeRequest, "Subscribe"),
            response_serializer=pb.Reconstruction.SerializeToString),
        "Audit": grpc.unary_unary_rpc_method_handler(
            servicer.Audit, request_deserializer=des(pb.AuditWindow, "Audit"),
            response_serializer=pb.AuditReply.SerializeToString),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelInfo, request_deserializer=des(pb.ModelInfoRequest, "GetModelInfo"),
            response_serializer=pb.ModelInfo.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


class FusionDecoderServicer(pb_grpc.FusionDecoderServicer):
    """The ``ndsc.v1.FusionDecoder`` RPCs.

    Every refusal has a precise status and a reason counted in
    ``ndsc_streams_rejected_total{reason}`` (uplinks), ``ndsc_audit_rejected_total`` or
    ``ndsc_auth_failures_total``; a refused call never affects other nodes' streams.
    """

    def __init__(self, bundle: Bundle, pipeline: DecodePipeline, metrics: DecoderMetrics,
                 authorize: Authorizer | None = None, device: str = "cpu", max_seq_gap: int = 1 << 20,
                 journal: Journal | None = None, max_frame_area: int = MAX_FRAME_AREA,
                 max_chunks: int = MAX_CHUNKS, max_groups: int = 256, max_streams: int = 1024,
                 stream_idle: float = 60.0, max_capture_age: float = 86400.0, max_capture_lead: float = 60.0):
        self.bundle = bundle
        self.pipeline = pipeline
        self.metrics = metrics
        self.authorize = authorize
        self.sessions = SessionTable(bundle, authorize, max_frame_area, max_groups)
        self.max_streams = max_streams
        self.stream_idle = stream_idle
        self.max_capture_age, self.max_capture_lead = max_capture_age, max_capture_lead
        self.streams = 0  # open Uplink handlers, header read or not
        self.max_frame_area = max_frame_area
        self.max_chunks = max_chunks
        self.device = device
        self.max_seq_gap = max_seq_gap
        self.journal = journal or Journal(None)
        self.draining = False
        self._accepted: dict[tuple[str, int], list[int]] = {}
        self._check_executor = ThreadPoolExecutor(1, thread_name_prefix="ndsc-check")

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
        log.warning("refused %s: %s (%s)", rpc, refused.message, refused.code.name)
        await context.abort(refused.code, refused.message)

    def _first_undecodable(self, source: int, frames: Sequence[FrameData], frame_shape: tuple[int, ...],
                           quality: str = "") -> tuple[int, str] | None:
        """(index, error) of the first whole payload that does not entropy-decode to the latent shape
        (with the tables of the stream's operating point ``quality``).

        Chunks are not checked here (only their joined payload can be decoded): an undecodable
        chunked payload is found at decoding, counted, and its source estimated."""
        for k, f in enumerate(frames):
            if f.chunks > 1:
                continue
            try:
                self.pipeline.runtime.entropy_decode(source, f.payload, frame_shape, quality or None)
            except EntropyCodingError as exc:
                return k, str(exc)
        return None

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
            return await asyncio.wait_for(messages.__anext__(), self.stream_idle)
        except asyncio.TimeoutError:
            raise StreamRefused(grpc.StatusCode.DEADLINE_EXCEEDED, "idle_timeout",
                                f"no uplink message for {self.stream_idle:g} s: stream closed, its source released "
                                "(reconnect when there is data)") from None

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
        try:
            first = await self._next(messages)
        except StopAsyncIteration:
            return
        except StreamRefused as refused:
            await self._refuse(context, refused)
        if isinstance(first, BadRequest):
            await self._refuse(context, first.refused)
        if first.WhichOneof("kind") != "header":
            await self._refuse(context, StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_header",
                                                      "the first uplink message must be a StreamHeader"))
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "decoder is shutting down")
        if self.streams > self.max_streams:
            await self._refuse(context, StreamRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_streams",
                f"the decoder serves at most {self.max_streams} uplink streams at once"))
        restarts = self.sessions.restarts
        try:
            session = self.sessions.open(first.header, context.invocation_metadata() or ())
        except StreamRefused as refused:
            await self._refuse(context, refused)
        if self.sessions.restarts > restarts:
            self.metrics.node_restarts.labels(session.group, session.node_id).inc()
        group, node, source = session.group, session.node_id, session.source_index
        labels = (group, node, str(source))
        self.metrics.uplink_messages.labels(*labels).inc()
        self.metrics.uplink_protocol_bytes.labels(*labels).inc(protocol_bytes(first))
        self.metrics.edge_flush_interval.labels(*labels).set(first.header.flush_interval_s)
        session.active = True
        session.touched = time.monotonic()
        self.pipeline.aligner(group)  # the group exists from its first stream (counted, evictable)
        active = self.metrics.active_streams.labels(group)  # resolved once: inc and dec hit one series
        active.inc()
        log.info("uplink open: group=%s node=%s source=%d quality=%s resume after seq %d", group, node, source,
                 session.quality or "-", session.last_seq)
        stream_high = 0  # highest seq this stream carried: a stream never repeats itself
        try:
            yield pb.Ack(last_seq=session.last_seq)
            while True:
                try:
                    message = await self._next(messages)
                except StopAsyncIteration:
                    break
                except StreamRefused as refused:
                    await self._refuse(context, refused)
                if isinstance(message, BadRequest):
                    await self._refuse(context, message.refused)
                if message.WhichOneof("kind") != "batch":
                    await self._refuse(context, StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_header",
                                                              "StreamHeader sent twice in one stream"))
                if self.draining:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "decoder is shutting down")
                session.touched = time.monotonic()
                self.metrics.uplink_messages.labels(*labels).inc()
                self.metrics.uplink_payload_bytes.labels(*labels).inc(payload_bytes(message.batch))
                self.metrics.uplink_protocol_bytes.labels(*labels).inc(protocol_bytes(message))
                self.metrics.frames_per_message.labels(group).observe(len(message.batch.frames))
                new, refusal, stream_high = self._screen(session, message.batch, stream_high)
                conflict = self._first_shape_conflict(session, new) if new else None
                if conflict is not None:
                    frame, refusal = conflict
                    self.metrics.frames.labels(group, node, "frame_shape_mismatch").inc()
                    new = new[:new.index(frame)]
                if new:
                    bad = await asyncio.get_running_loop().run_in_executor(
                        self._check_executor, self._first_undecodable, source, new, session.frame_shape,
                        session.quality)
                    if bad is not None:
                        k, error = bad
                        self.metrics.frames.labels(group, node, "undecodable").inc()
                        refusal = StreamRefused(
                            grpc.StatusCode.INVALID_ARGUMENT, "undecodable",
                            f"frame seq {new[k].seq} (window {new[k].window}): payload does not decode to "
                            f"source {source}'s latents ({error}); held up to seq {new[k].seq - 1}")
                        new = new[:k]
                    try:
                        await self._hold(session, new)
                    except (sqlite3.Error, OverflowError) as exc:  # nothing was acked: the edge resends after reconnecting
                        log.exception("journaling frames of group %r failed", group)
                        refusal = StreamRefused(grpc.StatusCode.UNAVAILABLE, "journal_failed",
                                                f"the decoder could not make frames durable ({exc}); retry")
                if refusal is not None:
                    await self._refuse(context, refusal)
                yield pb.Ack(last_seq=session.last_seq)
        finally:
            session.active = False
            session.touched = time.monotonic()
            active.dec()

    def _screen(self, session: NodeSession, batch: pb.FrameBatch,
                stream_high: int) -> tuple[list[FrameData], StreamRefused | None, int]:
        """Check a batch's frames in order, without side effects on the session.

        Returns the new frames up to the first bad one, the refusal for that one (or None)
        and the stream's new highest seq. Resends of frames already held are dropped and
        counted as ``duplicate`` (idempotent); everything else wrong refuses the stream.
        """
        group, node = session.group, session.node_id
        last_seq, last_window = session.last_seq, session.last_window
        last_chunk, last_chunks = session.last_chunk, session.last_chunks
        new: list[FrameData] = []
        now_us = time.time() * 1e6
        earliest, latest = now_us - self.max_capture_age * 1e6, now_us + self.max_capture_lead * 1e6
        for frame in unpack_batch(batch):
            if frame.seq == 0:
                return new, StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_seq",
                                          "seq 0 in a FrameBatch (seqs start at 1)"), stream_high
            if frame.seq <= stream_high:
                return new, StreamRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, "seq_replayed",
                    f"seq {frame.seq} repeated within one stream (already sent up to {stream_high})"), stream_high
            if frame.seq > last_seq + 1 + self.max_seq_gap or frame.seq > MAX_SEQ:
                return new, StreamRefused(
                    grpc.StatusCode.OUT_OF_RANGE, "seq_out_of_range",
                    f"seq {frame.seq} is more than {self.max_seq_gap} ahead of the last held seq {last_seq} "
                    f"or beyond 2^53-1"), stream_high
            if frame.window > MAX_WINDOW_INDEX:
                # the documented range (docs/wire.md): exact in a double, fits the journal's INTEGER
                return new, StreamRefused(
                    grpc.StatusCode.OUT_OF_RANGE, "window_out_of_range",
                    f"frame seq {frame.seq}: window index {frame.window} beyond 2^53-1; held up to seq "
                    f"{new[-1].seq if new else last_seq}"), stream_high
            if not frame.payload:
                return new, StreamRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, "empty_payload",
                    f"frame seq {frame.seq} (window {frame.window}): empty payload; held up to seq "
                    f"{new[-1].seq if new else last_seq}"), stream_high
            stream_high = frame.seq
            if frame.seq <= last_seq:
                self.metrics.frames.labels(group, node, "duplicate").inc()
                continue
            if crc32(frame.payload) != frame.crc32:
                # DATA_LOSS, not INVALID_ARGUMENT: the request was well-formed but its bytes
                # were corrupted in transit; the edge resends from the last ack.
                self.metrics.frames.labels(group, node, "crc_mismatch").inc()
                return new, StreamRefused(grpc.StatusCode.DATA_LOSS, "crc_mismatch",
                                          f"frame seq {frame.seq} (window {frame.window}): crc32 mismatch; "
                                          f"held up to seq {last_seq}"), stream_high
            refused = self._check_chunk(frame, last_window, last_chunk, last_chunks)
            if refused is not None:
                return new, refused, stream_high
            if not earliest <= frame.capture_us <= latest:
                # a clock far off (or a forged time) would poison the latency histogram: the frame
                # is kept, its capture time becomes unknown (0) and is counted
                self.metrics.frames.labels(group, node, "capture_time_out_of_range").inc()
                frame = replace(frame, capture_us=0)
            new.append(frame)
            last_seq, last_window, last_chunk, last_chunks = frame.seq, frame.window, frame.chunk, frame.chunks
        return new, None, stream_high

    def _check_chunk(self, frame: FrameData, last_window: int, last_chunk: int,
                     last_chunks: int) -> StreamRefused | None:
        """Window order with chunks: a window's first chunk (or its only frame) comes after the
        previous window; a later chunk may continue the previous frame's window, in increasing
        chunk order with the same count (chunks the edge dropped leave gaps, never reorder)."""
        where = f"frame seq {frame.seq} (window {frame.window}, chunk {frame.chunk} of {frame.chunks})"
        if frame.chunk >= frame.chunks:
            return StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_chunk", f"{where}: chunk index not below count")
        if frame.chunks > self.max_chunks:
            return StreamRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_chunks",
                                 f"{where}: more than {self.max_chunks} chunks per window")
        if frame.window > last_window:
            return None
        continues = (frame.chunk > 0 and frame.window == last_window
                     and (last_chunks == 0 or (frame.chunks == last_chunks and frame.chunk > last_chunk)))
        if continues:
            return None
        if frame.chunk > 0 and frame.window == last_window:
            return StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_chunk",
                                 f"{where}: does not continue chunk {last_chunk} of {last_chunks} of its window")
        return StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "window_order",
                             f"frame seq {frame.seq}: window {frame.window} not after window {last_window}")

    async def _hold(self, session: NodeSession, frames: Sequence[FrameData]) -> None:
        """Make checked frames durable (journal), advance the session, hand them to the aligner."""
        if not frames:
            return
        group, node, source = session.group, session.node_id, session.source_index
        lost = sum(f.seq - prev - 1 for prev, f in zip([session.last_seq] + [f.seq for f in frames[:-1]], frames))
        if self.journal.enabled:
            row = SessionRow(group, node, source, session.incarnation, frames[-1].seq, frames[-1].window)
            t0 = time.perf_counter()
            await self.journal.run(self.journal.record_frames, row, source, frames, session.frame_shape,
                                   session.quality)
            self.metrics.journal_seconds.labels("frames").observe(time.perf_counter() - t0)
        for f in frames:
            session.commit(f)
        if lost:
            self.metrics.frames.labels(group, node, "lost").inc(lost)
        self.metrics.frames.labels(group, node, "accepted").inc(len(frames))
        refused = []
        samples = math.prod(session.frame_shape) if session.frame_shape else None
        for f in frames:
            # samples once per window (at its first chunk), bytes for every chunk
            self._count_accepted(group, source, len(f.payload), samples if f.chunk == 0 else 0)
            point = (group, str(source), session.quality)  # bounded: unknown points are refused at open
            self.metrics.quality_windows.labels(*point).inc(1 if f.chunk == 0 else 0)  # a window: its first chunk
            self.metrics.quality_payload_bytes.labels(*point).inc(len(f.payload))
            status = await self.pipeline.add(group, f.window, source, f.payload, f.capture_us, chunk=f.chunk,
                                             chunks=f.chunks, shape=session.frame_shape or None,
                                             quality=session.quality or None)
            if status in ("late", "shape_mismatch", "bad_chunk"):  # not held: the journaled copy is dead
                refused.append((group, f.window, source))
            if status in ("shape_mismatch", "bad_chunk"):  # raced another source's frame of the same window,
                # or a chunk count that differs from the window's held chunks: that source is estimated
                self.metrics.frames.labels(group, node, "frame_shape_mismatch" if status == "shape_mismatch"
                                           else "bad_chunk").inc()
        if refused and self.journal.enabled:
            await self.journal.run(self.journal.forget_frames, refused)

    def _count_accepted(self, group: str, source: int, nbytes: int, samples: int | None = None) -> None:
        """Bytes of one accepted frame and the input samples it adds (None: one bundle window)."""
        samples = self.bundle.sources[source].samples_per_window if samples is None else samples
        sums = self._accepted.setdefault((group, source), [0, 0])  # payload bytes, samples
        sums[0] += nbytes
        sums[1] += samples
        self.metrics.accepted_samples.labels(group, str(source)).inc(samples)
        self.metrics.accepted_payload_bytes.labels(group, str(source)).inc(nbytes)
        if sums[1]:
            self.metrics.bits_per_sample.labels(group, str(source)).set(8.0 * sums[0] / sums[1])

    async def _check_call(self, request, context, rpc: str, check=None) -> None:
        """Refuse a malformed request, or (with credentials configured) a caller ``check`` refuses."""
        if isinstance(request, BadRequest):
            await self._refuse(context, request.refused, rpc)
        if check is not None and hasattr(self.authorize, "check_reader"):
            try:
                check(self.authorize, context.invocation_metadata() or ())
            except StreamRefused as refused:
                await self._refuse(context, refused, rpc)

    async def Subscribe(self, request, context):
        await self._check_call(request, context, "Subscribe", lambda a, md: a.check_reader(request.group, md))
        queue = self.pipeline.broadcaster.add(request.group, request.include_samples)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                for message in item:
                    yield message
        finally:
            self.pipeline.broadcaster.remove(queue)

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
                                          quality_points=list(s.quality_names), default_quality=s.default_quality or "")
                     for s in b.sources],
            device=self.device, deadline_s=self.pipeline.deadline, max_batch=self.pipeline.max_batch,
            groups=sorted(set(self.sessions.groups()) | set(self.pipeline.aligners)))


def server_keepalive_options(keepalive: float) -> list[tuple[str, int]]:
    """HTTP/2 keepalive: ping every ``keepalive`` s, cut a connection whose peer does not answer
    within 10 s (a vanished edge's streams end and release their sources); allow client pings
    down to every 10 s (edges ping too, to notice a dead decoder)."""
    ms = int(keepalive * 1000)
    return [("grpc.keepalive_time_ms", ms), ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000)]


def _usable_device(requested: str | None) -> str | None:
    """``requested``, except CUDA on a machine without it falls back to CPU (with a warning)."""
    import torch

    if requested and requested.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available: decoding on cpu", requested)
        return "cpu"
    return requested


class DecoderServer:
    """The decoder process's gRPC server: service + health + reflection.

    Args:
        bundle: the loaded bundle every node must match.
        listen: ``host:port`` (port 0 picks a free one; see :attr:`port`).
        registry: Prometheus registry for this server's metrics.
        interceptors: grpc.aio server interceptors.
        authorize: per-node credential check called on each stream header, e.g. a
            :class:`fusion_decoder.auth.TokenBook` (which also guards Subscribe, Audit and
            GetModelInfo).
        tls: (cert, key, client_ca or None) PEM paths: serve TLS, mutual when client_ca is given.
        state_dir: where :class:`fusion_decoder.journal.Journal` keeps sessions, held frames and
            decoded windows (None: in memory only; a restart loses held windows).
        max_seq_gap: a frame more than this many seqs ahead of the node's last held seq is refused.
        subscriber_queue: reconstructions queued per Subscribe stream before the oldest is dropped.
        max_frame_area: largest H·W a whole-frame stream may announce (RESOURCE_EXHAUSTED beyond).
        max_chunks: most chunks one window's payload may be split into (RESOURCE_EXHAUSTED beyond).
        max_groups: groups served at once (a new one beyond: RESOURCE_EXHAUSTED ``too_many_groups``).
        max_streams: uplink streams open at once (beyond: RESOURCE_EXHAUSTED ``too_many_streams``).
        group_idle: seconds a group without open streams or held windows is kept before eviction.
        stream_idle: seconds an uplink may stay silent before it is ended (DEADLINE_EXCEEDED).
        keepalive: seconds between the server's HTTP/2 pings on a connection (dead peers are cut).
        max_capture_age, max_capture_lead: the sane capture-time window around the decoder's
            clock; a frame's capture time outside it becomes unknown (0) and is counted.
        max_label_groups, max_label_nodes: distinct group / (group, node) label values in the
            metrics; beyond them series read ``_overflow``.
    """

    def __init__(self, bundle: Bundle, listen: str = "127.0.0.1:0", *, registry: CollectorRegistry,
                 device: str | None = None, deadline: float = 2.0, max_batch: int = 64, grace: float = 5.0,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, interceptors: Sequence = (),
                 authorize: Authorizer | None = None, tls: tuple[str, str, str | None] | None = None,
                 state_dir: str | None = None, journal_sync: str = "normal", max_seq_gap: int = 1 << 20,
                 subscriber_queue: int = 4096, max_frame_area: int = MAX_FRAME_AREA, max_chunks: int = MAX_CHUNKS,
                 max_groups: int = 256, max_streams: int = 1024, group_idle: float = 300.0,
                 stream_idle: float = 60.0, keepalive: float = 30.0, max_capture_age: float = 86400.0,
                 max_capture_lead: float = 60.0, max_label_groups: int = 128, max_label_nodes: int = 1024):
        self.bundle = bundle
        self.listen = listen
        self.grace = grace
        self.metrics = DecoderMetrics(registry, max_label_groups, max_label_nodes)
        self.runtime = JointDecoderRuntime(bundle, device=_usable_device(device))
        self.max_message_bytes = max_message_bytes
        self.interceptors = tuple(interceptors)
        self.tls = tls
        self.state_dir = state_dir
        self.journal_sync = journal_sync
        self.max_seq_gap = max_seq_gap
        self.subscriber_queue = subscriber_queue
        self.max_frame_area, self.max_chunks = max_frame_area, max_chunks
        self.max_groups, self.max_streams, self.group_idle = max_groups, max_streams, group_idle
        self.stream_idle, self.keepalive = stream_idle, keepalive
        self.capture_window = (max_capture_age, max_capture_lead)
        self._evictor: asyncio.Task | None = None
        self.pipeline: DecodePipeline | None = None
        self.servicer: FusionDecoderServicer | None = None
        self._deadline, self._max_batch, self._authorize = deadline, max_batch, authorize
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> int:
        """Restore journaled state, bind and start serving; returns the bound port."""
        journal = Journal(self.state_dir, self.journal_sync)
        self.pipeline = DecodePipeline(self.runtime, self.metrics, self._deadline, self._max_batch, journal,
                                       self.subscriber_queue, self.max_message_bytes)
        self.pipeline.start()
        self.servicer = FusionDecoderServicer(self.bundle, self.pipeline, self.metrics, self._authorize,
                                              str(self.runtime.device), self.max_seq_gap, journal,
                                              self.max_frame_area, self.max_chunks, self.max_groups,
                                              self.max_streams, self.stream_idle, *self.capture_window)
        if journal.enabled:
            nodes = self.servicer.restore_sessions()
            held = await self.pipeline.restore()
            log.info("journal %s: resumed %d node sessions, %d held frames", journal.path, nodes, held)
        # grpc's own limit is twice ours, so a message between the two is refused by our
        # deserializer with a counted reason; beyond it grpc refuses (RESOURCE_EXHAUSTED) uncounted.
        options = channel_options(self.max_message_bytes)
        options = [(k, 2 * v if k == "grpc.max_receive_message_length" else v) for k, v in options]
        options += server_keepalive_options(self.keepalive)
        # no SO_REUSEPORT: a second decoder on a taken port must fail, not split the edges between two
        options.append(("grpc.so_reuseport", 0))
        self._server = grpc.aio.server(options=options, interceptors=self.interceptors)
        add_servicer(self.servicer, self._server, self.max_message_bytes, self.metrics)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), self._server)
        try:
            if self.tls is not None:
                self.port = self._server.add_secure_port(self.listen, server_credentials(*self.tls))
            else:
                self.port = self._server.add_insecure_port(self.listen)
        except RuntimeError:  # grpc's "Failed to bind": the port is taken (or the address is not ours)
            self.port = 0
        if self.port == 0:
            await self.pipeline.close()
            self._server = None
            raise OSError(f"cannot listen on {self.listen}: address in use or not available")
        await self._server.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._evictor = asyncio.create_task(self._evict_loop())
        log.info("decoder serving bundle %s on port %d (device %s, %s)", self.bundle.bundle_id[:19], self.port,
                 self.runtime.device, "mutual TLS" if self.tls and self.tls[2] else "TLS" if self.tls else "plaintext")
        return self.port

    async def wait(self) -> None:
        await self._server.wait_for_termination()

    async def _evict_loop(self) -> None:
        tick = min(max(self.group_idle / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(tick)
            self.servicer.evict_idle_groups(self.group_idle)

    async def stop(self) -> None:
        """Graceful shutdown: refuse new frames, drain held windows to subscribers, stop."""
        if self._server is None:
            return
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.servicer.draining = True
        self._evictor.cancel()
        await asyncio.gather(self._evictor, return_exceptions=True)
        await self.pipeline.drain()
        await self._server.stop(self.grace)
        await self.pipeline.close()
        self.servicer._check_executor.shutdown(wait=True)
        self._server = None
        log.info("decoder stopped")
