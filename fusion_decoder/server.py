"""The fusion-decoder process's gRPC server: service + health + reflection, bound and stopped.

The pieces, each in its module: :mod:`fusion_decoder.receiver` (one stream's rules),
:mod:`fusion_decoder.sessions` (nodes across streams), :mod:`fusion_decoder.servicer` (the
RPCs, a thin adapter), :mod:`fusion_decoder.pipeline` (aligners, batched decoding,
journal, sinks), :mod:`fusion_decoder.broadcast` (Subscribe), :mod:`fusion_decoder.audit`
(distortion), :mod:`fusion_decoder.grpc_handlers` (tolerant deserializers).

Typical use::

    server = DecoderServer(load_bundle(path), listen="127.0.0.1:0", registry=CollectorRegistry())
    port = await server.start()
    ...
    await server.stop()          # drains held windows to subscribers first
"""
from __future__ import annotations

import asyncio
import gc
import logging
from typing import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from fusion_decoder.grpc_handlers import add_servicer
from fusion_decoder.journal import Journal
from fusion_decoder.loglimit import LogLimiter
from fusion_decoder.metrics import DecoderMetrics
from fusion_decoder.pipeline import DecodePipeline
from fusion_decoder.receiver import StreamLimits
from fusion_decoder.runtime import JointDecoderRuntime
from fusion_decoder.servicer import FusionDecoderServicer
from fusion_decoder.sessions import MAX_FRAME_AREA, Authorizer
from ndsc.bundle import Bundle
from ndsc.wire import MAX_MESSAGE_BYTES, SERVICE_NAME, channel_options
from ndsc.wire.reflection import enable_reflection
from ndsc.wire.tls import server_credentials

log = logging.getLogger("ndsc.decoder")

#: default largest chunk count one window's payload may announce
MAX_CHUNKS = 4096
#: seconds a stop spends decoding queued windows by default when a journal keeps the rest for the next
#: start (without a journal the default is every window: they exist nowhere else)
JOURNALED_DRAIN_SECONDS = 10.0


def server_keepalive_options(keepalive: float) -> list[tuple[str, int]]:
    """HTTP/2 keepalive: ping every ``keepalive`` s, cut a connection whose peer does not answer
    within min(keepalive, 10 s) (a vanished edge's streams end and release their sources);
    allow client pings down to every 10 s (a client may ping to notice a dead decoder)."""
    ms = int(keepalive * 1000)
    # grpc ≥ 1.5x times an unanswered ping out with ping_timeout_ms (keepalive_timeout_ms alone
    # leaves the connection open: checked by the keepalive test)
    return [("grpc.keepalive_time_ms", ms), ("grpc.keepalive_timeout_ms", min(ms, 10_000)),
            ("grpc.http2.ping_timeout_ms", min(ms, 10_000)),
            ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000)]


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
        drain_timeout: seconds :meth:`stop` may spend decoding queued windows (see
            :meth:`DecodePipeline.drain`); None: :data:`JOURNALED_DRAIN_SECONDS` with a journal,
            every window without.
        max_seq_gap: a frame more than this many seqs ahead of the node's last held seq is refused.
        subscriber_queue: reconstructions queued per Subscribe stream before the oldest is dropped.
        max_frame_area: largest H·W a whole-frame stream may announce (RESOURCE_EXHAUSTED beyond).
        max_chunks: most chunks one window's payload may be split into (RESOURCE_EXHAUSTED beyond).
        max_groups: groups served at once (a new one beyond: RESOURCE_EXHAUSTED ``too_many_groups``).
        max_streams: uplink streams open at once (beyond: RESOURCE_EXHAUSTED ``too_many_streams``).
        max_subscribers: Subscribe/SubscribeBatches streams open at once (beyond: RESOURCE_EXHAUSTED
            ``too_many_subscribers``): each costs work per decoded window.
        group_idle: seconds a group without open streams or held windows is kept before eviction.
        stream_idle: seconds an uplink may stay silent before it is ended (DEADLINE_EXCEEDED).
        ack_interval: seconds between one stream's Acks at least (a faster node's Acks coalesce).
        keepalive: seconds between the server's HTTP/2 pings on a connection (dead peers are cut).
        max_capture_age, max_capture_lead: the sane capture-time window around the decoder's
            clock; a frame's capture time outside it becomes unknown (0) and is counted.
        max_label_groups, max_label_nodes: distinct group / (group, node) label values in the
            metrics; beyond them series read ``_overflow``.
        refusal_log: (burst, interval): refusal log lines one reason may write per interval
            seconds; beyond, they are counted in ``ndsc_log_lines_suppressed_total{reason}``.
    """

    def __init__(self, bundle: Bundle, listen: str = "127.0.0.1:0", *, registry: CollectorRegistry,
                 device: str | None = None, deadline: float = 2.0, max_batch: int = 64, grace: float = 5.0,
                 drain_timeout: float | None = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, interceptors: Sequence = (),
                 authorize: Authorizer | None = None, tls: tuple[str, str, str | None] | None = None,
                 state_dir: str | None = None, journal_sync: str = "normal", max_seq_gap: int = 1 << 20,
                 subscriber_queue: int = 4096, max_frame_area: int = MAX_FRAME_AREA, max_chunks: int = MAX_CHUNKS,
                 max_groups: int = 256, max_streams: int = 1024, max_subscribers: int = 64,
                 group_idle: float = 300.0,
                 stream_idle: float = 60.0, keepalive: float = 30.0, max_capture_age: float = 86400.0,
                 max_capture_lead: float = 60.0, max_label_groups: int = 128, max_label_nodes: int = 1024,
                 refusal_log: tuple[int, float] = (5, 10.0), ack_interval: float = 0.025):
        self.bundle = bundle
        self.listen = listen
        self.grace = grace
        self.drain_timeout = drain_timeout
        self.metrics = DecoderMetrics(registry, max_label_groups, max_label_nodes)
        self.runtime = JointDecoderRuntime(bundle, device=device)
        self.max_message_bytes = max_message_bytes
        self.interceptors = tuple(interceptors)
        self.tls = tls
        self.state_dir = state_dir
        self.journal_sync = journal_sync
        self.max_seq_gap = max_seq_gap
        self.subscriber_queue = subscriber_queue
        self.max_frame_area, self.max_chunks = max_frame_area, max_chunks
        self.max_groups, self.max_streams, self.group_idle = max_groups, max_streams, group_idle
        self.max_subscribers = max_subscribers
        self.stream_idle, self.keepalive = stream_idle, keepalive
        self.capture_window = (max_capture_age, max_capture_lead)
        self.refusal_log = refusal_log
        self.ack_interval = ack_interval
        self._evictor: asyncio.Task | None = None
        self.pipeline: DecodePipeline | None = None
        self.servicer: FusionDecoderServicer | None = None
        self._deadline, self._max_batch, self._authorize = deadline, max_batch, authorize
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> int:
        """Warm the joint decoder up, restore journaled state, bind and start serving; returns the bound port."""
        seconds = await asyncio.get_running_loop().run_in_executor(None, self.runtime.warm_up)
        log.info("joint decoder warmed up on %s in %.0f ms", self.runtime.device, 1e3 * seconds)
        journal = Journal(self.state_dir, self.journal_sync)
        self.pipeline = DecodePipeline(self.runtime, self.metrics, self._deadline, self._max_batch, journal,
                                       self.subscriber_queue, self.max_message_bytes)
        self.pipeline.start()
        limits = StreamLimits(self.max_seq_gap, self.max_chunks, *self.capture_window)
        self.servicer = FusionDecoderServicer(self.bundle, self.pipeline, self.metrics, self._authorize,
                                              str(self.runtime.device), journal, limits=limits,
                                              max_frame_area=self.max_frame_area, max_groups=self.max_groups,
                                              max_streams=self.max_streams, max_subscribers=self.max_subscribers,
                                              stream_idle=self.stream_idle,
                                              log_limiter=LogLimiter(*self.refusal_log),
                                              ack_interval=self.ack_interval)
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
        # torch, the bundle and grpc are loaded: keep their objects out of every later collection
        # (a full collection over them is a pause every stream's latency would see)
        gc.freeze()
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
        """Graceful shutdown: refuse new frames, drain held windows to subscribers (within the drain
        budget), stop."""
        if self._server is None:
            return
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.servicer.draining = True
        self._evictor.cancel()
        await asyncio.gather(self._evictor, return_exceptions=True)
        budget = self.drain_timeout
        if budget is None and self.pipeline.journal.enabled:
            budget = JOURNALED_DRAIN_SECONDS  # what a stop leaves undecoded stays in the journal
        await self.pipeline.drain(budget)
        await self._server.stop(self.grace)
        await self.pipeline.close()
        self.servicer._check_executor.shutdown(wait=True)
        self._server = None
        log.info("decoder stopped")
