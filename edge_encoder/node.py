"""The edge node: source → EdgeEncoder → frames → gRPC uplink with resume.

One asyncio program with two halves joined by a bounded buffer of coded frames:

* the producer reads windows (``ndsc.sources.open_source`` + ``paced``) and encodes
  them in a worker thread; a bad window is counted and skipped, never fatal. With a
  fully convolutional image encoder (the bundle's ``frame_stride``) a window is a whole
  frame of any size; a payload over the chunk budget becomes several frames (chunks),
  each with its own seq and crc;
* the sender keeps one ``Uplink`` stream open, batches frames (flush interval), and
  trims the buffer on every Ack. Seqs, chunks, the buffer and resume live in the plain
  state machine :class:`ndsc.wire.sender.Sender`; this module adds the socket and the clock. On a broken stream it reconnects with exponential
  back-off; the decoder's first Ack says which seq it already holds, so the node
  resends exactly what follows. A full buffer drops its oldest frames (counted). A
  stream's header carries one frame shape; a frame of another size ends the stream
  (after its frames are written) and the next one opens with the new shape.

Sampled raw windows go to the ``Audit`` RPC (1 in ``audit_every``), apart from the rate.
Never imports torch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time

import grpc
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge_encoder.binning import SyndromeEdgeMetrics, SyndromeResponder
from edge_encoder.stereo_tiles import StereoTileResponder
from edge_encoder.encoder import EdgeEncoder
from edge_encoder.settings import EdgeSettings
from ndsc.bundle import Bundle, load_bundle
from ndsc.sources.base import SourceError, Window, check_frame, check_window, open_source, paced
from ndsc.stereo_tiles import STEREO_TILES
from ndsc.wire import (
    GROUP_METADATA_KEY,
    TOKEN_METADATA_KEY,
    FrameData,
    channel_options,
    pack_batch,
    pb,
    pb_grpc,
    protocol_bytes,
)
from ndsc.wire.sender import Pending, Sender
from ndsc.wire.tls import channel_credentials

log = logging.getLogger("ndsc.edge")

#: statuses after which reconnecting cannot help: the node is misconfigured
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
#: room left in a message for everything that is not payload
_MESSAGE_HEADROOM = 4096


class EdgeFatalError(RuntimeError):
    """The decoder refused this node for a reason a retry cannot fix."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code


class EdgeMetrics:
    """Counters of one edge node (``registry`` injected, never global)."""

    def __init__(self, registry: CollectorRegistry, group: str, node: str, source: int):
        labels = {"group": group, "node": node, "source": str(source)}
        names = list(labels)

        def counter(name, doc, extra=()):
            c = Counter(name, doc, names + list(extra), registry=registry)
            return c if extra else c.labels(**labels)

        self._labels = labels
        self.frames = counter("ndsc_edge_frames", "Windows encoded into frames")
        self.chunked_windows = counter(
            "ndsc_edge_chunked_windows", "Windows whose payload exceeded the chunk budget (sent as several frames)"
        )
        self.streams = counter("ndsc_edge_streams", "Uplink streams opened (a new frame size opens one)")
        self.payload_bytes = counter(
            "ndsc_edge_payload_bytes", "Payload bytes written to the uplink (resends included)"
        )
        self.protocol_bytes = counter(
            "ndsc_edge_protocol_bytes", "Uplink bytes beyond payloads: protobuf + 5-byte gRPC prefix per message"
        )
        self.messages = counter("ndsc_edge_messages", "Uplink messages written")
        self.resent_frames = counter("ndsc_edge_resent_frames", "Frames sent again after a reconnect")
        self.dropped_frames = counter("ndsc_edge_dropped_frames", "Unacknowledged frames dropped by a full buffer")
        self.reconnects = counter("ndsc_edge_reconnects", "Uplink streams that broke and were retried")
        self.audit_windows = counter("ndsc_edge_audit_windows", "Raw windows sent to the Audit RPC")
        self.audit_bytes = counter("ndsc_edge_audit_bytes", "Bytes of Audit messages (apart from the rate)")
        self._skipped = counter("ndsc_edge_skipped_windows", "Windows not coded, by reason", ["reason"])
        self.encode_seconds = Histogram(
            "ndsc_edge_encode_seconds",
            "ONNX analysis + rounding + entropy coding per window",
            names,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        ).labels(**labels)
        self.buffered = Gauge(
            "ndsc_edge_buffered_frames", "Frames awaiting acknowledgement", names, registry=registry
        ).labels(**labels)
        self.acked_seq = Gauge(
            "ndsc_edge_acked_seq", "Last seq the decoder acknowledged", names, registry=registry
        ).labels(**labels)
        self.flush_interval = Gauge(
            "ndsc_edge_flush_interval_seconds", "The node's batching setting", names, registry=registry
        ).labels(**labels)

    def skipped(self, reason: str):
        return self._skipped.labels(**self._labels, reason=reason)


class EdgeNode:
    """One edge node. ``await node.run()`` streams until the source ends (or ``stop()``).

    Args:
        settings: the node's settings.
        registry: Prometheus registry for its metrics.
        bundle: an already loaded bundle (else ``settings.bundle`` is loaded).
    """

    def __init__(self, settings: EdgeSettings, registry: CollectorRegistry, bundle: Bundle | None = None):
        self.settings = settings.validate()
        assert settings.bundle is not None  # validate() requires one
        self.bundle = bundle or load_bundle(settings.bundle)
        # raises BundleError (naming the bundle's points) for an unknown point: before any connection
        self.encoder = EdgeEncoder(self.bundle, settings.source_index, quality=settings.quality)
        self.info = self.encoder.info
        self.whole_frames = self.info.whole_frames
        self.chunk_bytes = settings.max_chunk_bytes or settings.max_message_bytes - _MESSAGE_HEADROOM
        if not 0 < self.chunk_bytes <= settings.max_message_bytes - _MESSAGE_HEADROOM:
            raise ValueError(f"max_chunk_bytes must be at most the message size less {_MESSAGE_HEADROOM} bytes")
        self.metrics = EdgeMetrics(registry, settings.group, settings.node_name, settings.source_index)
        self.metrics.flush_interval.set(settings.flush_interval)
        self.windows_read = 0
        self.skipped_before_start = 0  # windows due before this node started (joined after the shared epoch)
        self.sender = Sender(settings.buffer_frames, self.chunk_bytes)
        # a syndrome-coded source (binning): payloads are syndromes, windows kept for the decoder's requests
        self.syndrome: SyndromeResponder | None = None
        if self.info.syndrome:
            metrics = SyndromeEdgeMetrics(registry, settings.group, settings.node_name, settings.source_index)
            stereo = self.info.binning is not None and self.info.binning.conditional.get("kind") == STEREO_TILES
            # a right camera's whole frames (stereo tiles) keep only their symbols, a frame each
            self.syndrome = (
                StereoTileResponder(
                    self.info, keep=min(settings.buffer_frames, 64), metrics=metrics, quality=self.encoder.quality
                )
                if stereo
                else SyndromeResponder(self.info, keep=settings.buffer_frames, metrics=metrics)
            )
        self._source_done = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._acked_event = asyncio.Event()
        self._audits: set[asyncio.Task] = set()
        self._channel: grpc.aio.Channel | None = None
        # on every call, so an L7 proxy can route a group's streams to one decoder replica
        self._metadata: tuple[tuple[str, str], ...] = ((GROUP_METADATA_KEY, settings.group),)
        token = settings.credential()
        if token:
            self._metadata += ((TOKEN_METADATA_KEY, f"Bearer {token}"),)
        # kept across reconnects, new per process: tells the decoder whether to resume or restart
        self.incarnation = secrets.randbits(64) or 1  # 0 is refused (the proto default)

    # ----- producer ---------------------------------------------------------------------
    def _source_spec(self) -> str:
        spec = self.settings.source
        if spec == "bundle":
            spec = str(self.bundle.extra.get("edge_source") or "")
            if not spec:
                raise SourceError("bundle has no edge_source to replay; pass --source SPEC")
        return spec

    def _read_and_encode(self, windows) -> tuple[str, Window | None, bytes, float]:
        """In a worker thread: next window → checked → encoded. Returns (status, window, payload, seconds)."""
        try:
            w = next(windows)
        except StopIteration:
            return "end", None, b"", 0.0
        except SourceError as exc:
            log.warning("source error, window skipped: %s", exc)
            return "source_error", None, b"", 0.0
        try:
            if self.whole_frames:
                data = check_frame(w.data, self.info.input_shape[0])
            else:
                data = check_window(w.data, self.info.input_shape)
        except SourceError as exc:  # NaN/inf, or a truncated window: never encoded, counted
            log.warning("node %s: window %d skipped (bad_window): %s", self.settings.node_name, w.index, exc)
            return "bad_window", w, b"", 0.0
        t0 = time.perf_counter()
        if self.syndrome is not None and self.whole_frames:
            latents = self.encoder.frame_symbols(data).reshape(self.info.frame_latent_shape(data.shape))
            payload = self.syndrome.encode(w.index, latents)
        elif self.syndrome is not None:
            payload = self.syndrome.encode(w.index, self.encoder.symbols(data))
        else:
            payload = self.encoder.encode_frame(data) if self.whole_frames else self.encoder.encode(data)
        return "ok", Window(w.index, data, w.t_capture), payload, time.perf_counter() - t0

    async def _produce(self) -> None:
        source = open_source(
            self._source_spec(),
            self.settings.source_index,
            self.info.input_shape,
            frame_stride=self.info.frame_stride if self.whole_frames else None,
        )
        windows = iter(
            paced(
                source.windows(),
                source.window_period,
                realtime=not self.settings.fast,
                epoch=self.settings.start_at,
                on_skip=self._skipped_before_start,
            )
        )
        limit = self.settings.max_windows
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping and (limit is None or self.windows_read < limit):
                status, w, payload, seconds = await loop.run_in_executor(None, self._read_and_encode, windows)
                if status == "end":
                    break
                self.windows_read += 1
                if status == "ok" and w is not None and w.index <= self.sender.last_window:
                    status = "out_of_order"
                if status != "ok" or w is None:  # a source error comes without a window
                    self.metrics.skipped(status).inc()
                    continue
                self.metrics.encode_seconds.observe(seconds)
                self._enqueue(w, payload)
                self._maybe_audit(w)
        finally:
            self._source_done = True
            self._wake.set()

    def _skipped_before_start(self, w: Window) -> None:
        """A window due before this node started (it joined after the shared epoch): counted, never coded."""
        if not self.skipped_before_start:
            log.info(
                "node %s started after the shared epoch: skipping windows due before it started, from %d",
                self.settings.node_name,
                w.index,
            )
        self.skipped_before_start += 1
        self.metrics.skipped("before_start").inc()

    def _enqueue(self, w: Window, payload: bytes) -> None:
        chunks, dropped = self.sender.enqueue(
            w.index, int(round(w.t_capture * 1e6)), payload, tuple(w.data.shape), time.monotonic()
        )
        self.metrics.frames.inc()
        if chunks > 1:
            self.metrics.chunked_windows.inc()
        if dropped:
            self.metrics.dropped_frames.inc(dropped)
        self.metrics.buffered.set(self.sender.unacknowledged)
        self._wake.set()

    def _maybe_audit(self, w: Window) -> None:
        every = self.settings.audit_every
        if not every or w.index % every or len(self._audits) >= 4 or self._channel is None:
            return
        request = pb.AuditWindow(
            group=self.settings.group,
            node_id=self.settings.node_name,
            source_index=self.settings.source_index,
            bundle_id=self.bundle.bundle_id,
            window=w.index,
            shape=list(w.data.shape),
            samples_f32le=np.ascontiguousarray(w.data, dtype="<f4").tobytes(),
        )
        task = asyncio.create_task(self._audit(request))
        self._audits.add(task)
        task.add_done_callback(self._audits.discard)

    async def _audit(self, request: pb.AuditWindow) -> None:
        try:
            await pb_grpc.FusionDecoderStub(self._channel).Audit(request, timeout=10, metadata=self._metadata)
            self.metrics.audit_windows.inc()
            self.metrics.audit_bytes.inc(request.ByteSize() + 5)
        except grpc.aio.AioRpcError as exc:  # audits are best effort: distortion metrics only
            log.info("audit of window %d not delivered: %s", request.window, exc.code().name)

    # ----- sender -----------------------------------------------------------------------
    def _on_ack(self, last_seq: int) -> None:
        self.sender.on_ack(last_seq)
        self.metrics.acked_seq.set(self.sender.acked)
        self.metrics.buffered.set(self.sender.unacknowledged)
        self._acked_event.set()

    @property
    def finished(self) -> bool:
        """Source ended, every frame is acknowledged and (syndrome source) every window settled."""
        return self._source_done and not self.sender.unacknowledged and self._settled

    @property
    def _settled(self) -> bool:
        """The decoder will send no more requests (always, for a direct source)."""
        return self.syndrome is None or self.syndrome.settled

    async def _send_replies(self, call) -> None:
        """Write the answers to the decoder's syndrome requests (they go before new frames)."""
        assert self.syndrome is not None
        message = self.syndrome.reply_message()
        if message is None:
            return
        await call.write(message)
        nbytes = sum(len(b.bits) for b in message.syndrome.blocks)
        self.metrics.messages.inc()
        self.metrics.payload_bytes.inc(nbytes)
        self.metrics.protocol_bytes.inc(protocol_bytes(message) - nbytes)

    def _unsent_of(self, shape: tuple[int, ...]) -> tuple[list[Pending], bool]:
        """Unsent frames of ``shape`` up to the first of another shape, and whether one follows."""
        return self.sender.next_frames(shape, self.settings.max_batch_frames)

    async def _send_frames(self, call, shape: tuple[int, ...]) -> bool:
        """Write batches of ``shape`` until the source ends and everything is written (returns
        False) or the next frame has another shape (returns True: the stream must end)."""
        s = self.settings
        while True:
            self._wake.clear()
            if self.syndrome is not None and self.syndrome.replies:
                await self._send_replies(call)
            pending, boundary = self._unsent_of(shape)
            if not pending:
                if boundary:
                    return True
                if self._source_done and self._settled:
                    return False
                await self._wake.wait()
                continue
            if s.flush_interval > 0 and not self._source_done and not boundary and len(pending) < s.max_batch_frames:
                age = time.monotonic() - pending[0].enqueued
                if age < s.flush_interval:
                    try:
                        await asyncio.wait_for(self._wake.wait(), s.flush_interval - age)
                    except asyncio.TimeoutError:
                        pass
                    if time.monotonic() - pending[0].enqueued < s.flush_interval:
                        continue
                    pending, boundary = self._unsent_of(shape)
            frames: list[FrameData] = []
            size = 0
            for b in pending:
                if frames and size + len(b.frame.payload) > s.max_message_bytes - _MESSAGE_HEADROOM:
                    break
                frames.append(b.frame)
                size += len(b.frame.payload)
            message = pb.UplinkMessage(batch=pack_batch(frames))
            await call.write(message)
            self.metrics.messages.inc()
            self.metrics.payload_bytes.inc(size)
            self.metrics.protocol_bytes.inc(protocol_bytes(message))
            self.sender.sent(frames[-1].seq)

    async def _read_acks(self, call) -> None:
        while True:
            ack = await call.read()
            if ack is grpc.aio.EOF:
                return
            self._on_ack(ack.last_seq)
            if self.syndrome is not None:
                self.syndrome.on_ack(ack)  # requests become replies; settled windows are forgotten
                self._wake.set()

    async def _stream_shape(self) -> tuple[int, ...] | None:
        """The input shape the next stream's header announces (None: nothing left to send).

        Tile mode: the bundle's window shape. Whole frames: the shape of the oldest
        unacknowledged frame, so the node waits for its first frame before connecting.
        """
        if not self.whole_frames:
            return self.info.input_shape
        while not self.sender.unacknowledged:
            if self._source_done:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self.sender.buffer[0].shape

    async def _stream_once(self, stub: pb_grpc.FusionDecoderStub) -> None:
        """One Uplink stream: header, resume point, frames, until done, broken or a new frame size."""
        s, info = self.settings, self.info
        shape = await self._stream_shape()
        if shape is None:
            return
        call = stub.Uplink(metadata=self._metadata)
        header = pb.UplinkMessage(
            header=pb.StreamHeader(
                group=s.group,
                node_id=s.node_name,
                source_index=s.source_index,
                bundle_id=self.bundle.bundle_id,
                input_shape=list(shape),
                latent_shape=list(info.frame_latent_shape(shape)),
                flush_interval_s=s.flush_interval,
                incarnation=self.incarnation,
                quality=self.encoder.quality,
            )
        )
        await call.write(header)
        self.metrics.streams.inc()
        self.metrics.messages.inc()
        self.metrics.protocol_bytes.inc(protocol_bytes(header))
        first = await call.read()
        if first is grpc.aio.EOF:
            raise ConnectionError("decoder closed the stream before acknowledging the header")
        lost_state = first.last_seq < self.sender.acked  # a decoder that restarted without its journal
        resent = self.sender.resume(first.last_seq)
        self._on_ack(first.last_seq)
        if self.syndrome is not None:
            if lost_state:  # it holds none of the windows acked before: it can never ask for them
                buffered = self.sender.buffer
                self.syndrome.forget_below(buffered[0].frame.window if buffered else self.sender.last_window + 1)
            self.syndrome.on_ack(first)
        if resent:
            self.metrics.resent_frames.inc(resent)
            log.info("resuming after seq %d: resending %d frames", self.sender.acked, resent)
        sender = asyncio.create_task(self._send_frames(call, shape))
        reader = asyncio.create_task(self._read_acks(call))
        reshape = False
        try:
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                reshape = sender.result()
                await call.done_writing()
            await reader
        finally:
            for t in (sender, reader):
                t.cancel()
            await asyncio.gather(sender, reader, return_exceptions=True)
        code = await call.code()
        if code != grpc.StatusCode.OK:
            raise grpc.aio.AioRpcError(
                code, await call.initial_metadata(), await call.trailing_metadata(), await call.details()
            )
        if not self.finished and not reshape:
            raise ConnectionError("uplink stream ended before every frame was acknowledged")

    async def _send(self) -> None:
        s = self.settings
        delay = s.backoff_initial
        while not self.finished:
            try:
                await self._stream_once(pb_grpc.FusionDecoderStub(self._channel))
                delay = s.backoff_initial
            except grpc.aio.AioRpcError as exc:
                if exc.code() in FATAL_CODES:
                    raise EdgeFatalError(exc.code(), exc.details() or "") from exc
                self._retry_log(exc.code().name, exc.details(), delay)
            except (ConnectionError, asyncio.InvalidStateError) as exc:
                # InvalidStateError: a write raced the end of the call (the decoder died under us)
                self._retry_log("DISCONNECTED", str(exc), delay)
            else:
                continue
            self.metrics.reconnects.inc()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # jitter: nodes do not reconnect in lockstep
            delay = min(2 * delay, s.backoff_max)

    def _retry_log(self, code: str, details: str | None, delay: float) -> None:
        log.warning(
            "uplink to %s broke (%s: %s); retrying in %.1fs from seq %d",
            self.settings.decoder,
            code,
            details,
            delay,
            self.sender.acked + 1,
        )

    # ----- lifecycle --------------------------------------------------------------------
    async def run(self) -> int:
        """Stream until the source ends and every frame is acknowledged; returns windows read."""
        s = self.settings
        options = channel_options(s.max_message_bytes)
        if s.uses_tls:
            creds = channel_credentials(s.tls_ca, s.tls_cert, s.tls_key)
            self._channel = grpc.aio.secure_channel(s.decoder, creds, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(s.decoder, options=options)
        producer = asyncio.create_task(self._produce())
        sender = asyncio.create_task(self._send())
        stopped = asyncio.create_task(self._stop_requested.wait())
        waiting = {producer, sender, stopped}
        try:
            while not sender.done():
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if producer in done:
                    producer.result()  # raise a source failure
                if stopped in done and not sender.done():
                    # bounded drain: the buffer gets drain_timeout seconds to be acknowledged,
                    # even while the decoder is unreachable and the sender is backing off
                    await asyncio.wait({sender}, timeout=self.settings.drain_timeout)
                    break
            if sender.done():
                sender.result()  # raise the first failure (EdgeFatalError)
            if self._audits and not self._stopping:
                await asyncio.wait(set(self._audits), timeout=10)
        finally:
            for t in (producer, sender, stopped, *self._audits):
                t.cancel()
            await asyncio.gather(producer, sender, stopped, *self._audits, return_exceptions=True)
            await self._channel.close()
        return self.windows_read

    @property
    def unacknowledged(self) -> int:
        """Frames still buffered (not acknowledged by the decoder)."""
        return self.sender.unacknowledged

    def stop(self) -> None:
        """Stop reading the source; what is buffered gets ``drain_timeout`` seconds to be sent and
        acknowledged, then :meth:`run` returns (see :attr:`unacknowledged`)."""
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
