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
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from fusion_decoder.aligner import AlignedWindow, Aligner
from fusion_decoder.metrics import DecoderMetrics
from fusion_decoder.runtime import JointDecoderRuntime
from fusion_decoder.sessions import Authorizer, SessionTable, StreamRefused
from ndsc.bundle import Bundle
from ndsc.entropy import EntropyCodingError
from ndsc.wire import (GRPC_MESSAGE_PREFIX_BYTES, MAX_MESSAGE_BYTES, SERVICE_NAME, channel_options, pb, pb_grpc,
                       payload_bytes, protocol_bytes, unpack_batch)

log = logging.getLogger("ndsc.decoder")


@dataclass
class Decoded:
    """One reconstructed window."""

    window: AlignedWindow
    x_hat: np.ndarray  # (N, C, *S)
    present: np.ndarray  # (N,) bool
    reconstructed_time: float

    def message(self, include_samples: bool) -> pb.Reconstruction:
        w = self.window
        msg = pb.Reconstruction(
            group=w.group, window=w.window, shape=list(self.x_hat.shape), present=[bool(p) for p in self.present],
            payload_bytes=[len(p) if p is not None else 0 for p in w.payloads],
            capture_time=[c / 1e6 if c is not None else 0.0 for c in w.capture_us],
            reconstructed_time=self.reconstructed_time)
        if include_samples:
            msg.samples.extend(self.x_hat.ravel().tolist())
        return msg


class Broadcaster:
    """Subscribe streams: one bounded queue each; a slow subscriber loses windows, never stalls decoding."""

    def __init__(self, metrics: DecoderMetrics, queue_size: int = 4096):
        self.metrics = metrics
        self.queue_size = queue_size
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
        cache: dict[bool, pb.Reconstruction] = {}
        for group, include, q in self._subs:
            if group and group != item.window.group:
                continue
            if include not in cache:
                cache[include] = item.message(include)
            try:
                q.put_nowait(cache[include])
            except asyncio.QueueFull:
                self.metrics.subscriber_dropped.inc()

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

    def add_reconstruction(self, group: str, window: int, x_hat: np.ndarray) -> None:
        self._recent[(group, window)] = x_hat
        _trim(self._recent, self.keep)
        for source in range(x_hat.shape[0]):
            raw = self._waiting.pop((group, window, source), None)
            if raw is not None:
                self._score(group, source, raw, x_hat[source])

    def add_raw(self, group: str, window: int, source: int, raw: np.ndarray) -> bool:
        x_hat = self._recent.get((group, window))
        if x_hat is None:
            self._waiting[(group, window, source)] = raw
            _trim(self._waiting, self.keep)
            return False
        self._score(group, source, raw, x_hat[source])
        return True

    def _score(self, group: str, source: int, x: np.ndarray, x_hat: np.ndarray) -> None:
        x64, err = x.astype(np.float64), x.astype(np.float64) - x_hat.astype(np.float64)
        s = self._sums.setdefault((group, source), [0.0, 0.0, 0, math.inf, -math.inf])
        s[0] += float(np.sum(err**2))
        s[1] += float(np.sum(x64**2))
        s[2] += x64.size
        s[3], s[4] = min(s[3], float(x64.min())), max(s[4], float(x64.max()))
        mse = s[0] / s[2]
        labels = (group, str(source))
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

    def __init__(self, runtime: JointDecoderRuntime, metrics: DecoderMetrics, deadline: float, max_batch: int):
        self.runtime = runtime
        self.metrics = metrics
        self.deadline = deadline
        self.max_batch = max_batch
        self.aligners: dict[str, Aligner] = {}
        self.broadcaster = Broadcaster(metrics)
        self.audits = AuditBook(metrics)
        self._queue: asyncio.Queue[AlignedWindow] = asyncio.Queue(max(8 * max_batch, 256))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ndsc-decode")
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._decode_loop()), asyncio.create_task(self._expiry_loop())]

    async def add(self, group: str, window: int, source: int, payload: bytes, capture_us: int) -> str:
        aligner = self.aligners.get(group)
        if aligner is None:
            aligner = self.aligners[group] = Aligner(group, self.runtime.n_sources, self.deadline)
        result = aligner.add(window, source, payload, capture_us, time.monotonic())
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
                t0 = time.perf_counter()
                x_hat, present = await loop.run_in_executor(self._executor, self._decode, batch)
                self.metrics.decode_seconds.observe(time.perf_counter() - t0)
                self.metrics.decode_batch_size.observe(len(batch))
                self._publish(batch, x_hat, present)
            except Exception:  # a decoding bug must not kill the service; the windows are logged
                log.exception("decoding %d windows failed", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _decode(self, batch: Sequence[AlignedWindow]) -> tuple[np.ndarray, np.ndarray]:
        payloads = [list(w.payloads) for w in batch]
        try:
            return self.runtime.decode_batch(payloads)
        except EntropyCodingError:
            # A payload with a valid crc that does not decode (an encoder/bundle bug or a
            # forged frame): decode the rest, estimate that source as if missing.
            for w, row in zip(batch, payloads):
                for i, p in enumerate(row):
                    if p is None:
                        continue
                    try:
                        self.runtime.entropy_decode(i, p)
                    except EntropyCodingError:
                        row[i] = None
                        self.metrics.undecodable.labels(w.group, str(i)).inc()
            return self.runtime.decode_batch(payloads)

    def _publish(self, batch: Sequence[AlignedWindow], x_hat: np.ndarray, present: np.ndarray) -> None:
        now = time.time()
        for b, w in enumerate(batch):
            item = Decoded(w, x_hat[b], present[b], now)
            for c in w.capture_us:
                if c is not None:
                    self.metrics.capture_to_reconstruction.labels(w.group).observe(max(0.0, now - c / 1e6))
            self.metrics.reconstructions.labels(w.group).inc()
            self.audits.add_reconstruction(w.group, w.window, x_hat[b])
            self.broadcaster.publish(item)

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


class FusionDecoderServicer(pb_grpc.FusionDecoderServicer):
    """The ``ndsc.v1.FusionDecoder`` RPCs."""

    def __init__(self, bundle: Bundle, pipeline: DecodePipeline, metrics: DecoderMetrics,
                 authorize: Authorizer | None = None, device: str = "cpu"):
        self.bundle = bundle
        self.pipeline = pipeline
        self.metrics = metrics
        self.sessions = SessionTable(bundle, authorize)
        self.device = device
        self.draining = False
        self._accepted: dict[tuple[str, int], list[int]] = {}

    async def _refuse(self, context, refused: StreamRefused) -> None:
        self.metrics.streams_rejected.labels(refused.reason).inc()
        log.warning("refused uplink: %s (%s)", refused.message, refused.code.name)
        await context.abort(refused.code, refused.message)

    async def Uplink(self, request_iterator, context):
        messages = request_iterator.__aiter__()
        try:
            first = await messages.__anext__()
        except StopAsyncIteration:
            return
        if first.WhichOneof("kind") != "header":
            await self._refuse(context, StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_header",
                                                      "the first uplink message must be a StreamHeader"))
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "decoder is shutting down")
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
        self.metrics.active_streams.labels(group).inc()
        log.info("uplink open: group=%s node=%s source=%d resume after seq %d", group, node, source, session.last_seq)
        try:
            yield pb.Ack(last_seq=session.last_seq)
            async for message in messages:
                if message.WhichOneof("kind") != "batch":
                    await self._refuse(context, StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_header",
                                                              "StreamHeader sent twice in one stream"))
                if self.draining:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "decoder is shutting down")
                self.metrics.uplink_messages.labels(*labels).inc()
                self.metrics.uplink_payload_bytes.labels(*labels).inc(payload_bytes(message.batch))
                self.metrics.uplink_protocol_bytes.labels(*labels).inc(protocol_bytes(message))
                self.metrics.frames_per_message.labels(group).observe(len(message.batch.frames))
                for frame in unpack_batch(message.batch):
                    status, lost = session.accept(frame)
                    if lost:
                        self.metrics.frames.labels(group, node, "lost").inc(lost)
                    self.metrics.frames.labels(group, node, status).inc()
                    if status == "crc_mismatch":
                        # DATA_LOSS, not INVALID_ARGUMENT: the request was well-formed but its bytes
                        # were corrupted in transit; the edge resends from the last ack.
                        await self._refuse(context, StreamRefused(
                            grpc.StatusCode.DATA_LOSS, "crc_mismatch",
                            f"frame seq {frame.seq} (window {frame.window}): crc32 mismatch; "
                            f"held up to seq {session.last_seq}"))
                    if status == "accepted":
                        self._count_accepted(group, source, len(frame.payload))
                        await self.pipeline.add(group, frame.window, source, frame.payload, frame.capture_us)
                yield pb.Ack(last_seq=session.last_seq)
        finally:
            session.active = False
            self.metrics.active_streams.labels(group).dec()

    def _count_accepted(self, group: str, source: int, nbytes: int) -> None:
        sums = self._accepted.setdefault((group, source), [0, 0])  # payload bytes, samples
        sums[0] += nbytes
        sums[1] += self.bundle.sources[source].samples_per_window
        self.metrics.accepted_samples.labels(group, str(source)).inc(self.bundle.sources[source].samples_per_window)
        self.metrics.accepted_payload_bytes.labels(group, str(source)).inc(nbytes)
        self.metrics.bits_per_sample.labels(group, str(source)).set(8.0 * sums[0] / sums[1])

    async def Subscribe(self, request, context):
        queue = self.pipeline.broadcaster.add(request.group, request.include_samples)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            self.pipeline.broadcaster.remove(queue)

    async def Audit(self, request, context):
        source = request.source_index
        reason = None
        if request.bundle_id != self.bundle.bundle_id:
            reason, code, text = "bundle_mismatch", grpc.StatusCode.FAILED_PRECONDITION, "audit for another bundle"
        elif source >= self.bundle.n_sources or tuple(request.shape) != self.bundle.sources[source].input_shape:
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

    async def GetModelInfo(self, request, context):
        b = self.bundle
        return pb.ModelInfo(
            bundle_id=b.bundle_id, modality=b.modality, sample_rate=b.sample_rate or 0.0,
            sources=[pb.SourceDescription(name=s.name, channel_names=list(s.channel_names),
                                          input_shape=list(s.input_shape), latent_shape=list(s.latent_shape))
                     for s in b.sources],
            device=self.device, deadline_s=self.pipeline.deadline, max_batch=self.pipeline.max_batch,
            groups=sorted(set(self.sessions.groups()) | set(self.pipeline.aligners)))


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
        interceptors: grpc.aio server interceptors (the seam for auth, issue 9).
        authorize: per-node credential check called on each stream header.
    """

    def __init__(self, bundle: Bundle, listen: str = "127.0.0.1:0", *, registry: CollectorRegistry,
                 device: str | None = None, deadline: float = 2.0, max_batch: int = 64, grace: float = 5.0,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, interceptors: Sequence = (),
                 authorize: Authorizer | None = None):
        self.bundle = bundle
        self.listen = listen
        self.grace = grace
        self.metrics = DecoderMetrics(registry)
        self.runtime = JointDecoderRuntime(bundle, device=_usable_device(device))
        self.max_message_bytes = max_message_bytes
        self.interceptors = tuple(interceptors)
        self.pipeline: DecodePipeline | None = None
        self.servicer: FusionDecoderServicer | None = None
        self._deadline, self._max_batch, self._authorize = deadline, max_batch, authorize
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        self.pipeline = DecodePipeline(self.runtime, self.metrics, self._deadline, self._max_batch)
        self.pipeline.start()
        self.servicer = FusionDecoderServicer(self.bundle, self.pipeline, self.metrics, self._authorize,
                                              str(self.runtime.device))
        self._server = grpc.aio.server(options=channel_options(self.max_message_bytes),
                                       interceptors=self.interceptors)
        pb_grpc.add_FusionDecoderServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        self.port = self._server.add_insecure_port(self.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.listen}")
        await self._server.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("decoder serving bundle %s on port %d (device %s)", self.bundle.bundle_id[:19], self.port,
                 self.runtime.device)
        return self.port

    async def wait(self) -> None:
        await self._server.wait_for_termination()

    async def stop(self) -> None:
        """Graceful shutdown: refuse new frames, drain held windows to subscribers, stop."""
        if self._server is None:
            return
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.servicer.draining = True
        await self.pipeline.drain()
        await self._server.stop(self.grace)
        await self.pipeline.close()
        self._server = None
        log.info("decoder stopped")
