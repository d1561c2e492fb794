"""Aligners per group → bounded queue, fair across groups → batched decoding in a worker thread →
journal → sinks.

Decoding runs in one worker thread so the event loop keeps serving streams. A window that
fails to decode, journal or publish is dropped alone and counted
(``ndsc_window_failures_total{stage}``), never with its batch. Whole frames batch up to
:data:`BATCH_SAMPLES` per source, so one batch (what a stop must wait for) stays one large
frame's work; a stop decodes the queue within its budget (:meth:`DecodePipeline.drain`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from fusion_decoder.aligner import AddResult, AlignedWindow, Aligner
from fusion_decoder.audit import AuditBook
from fusion_decoder.binning import BinningStage
from fusion_decoder.broadcast import Broadcaster, Decoded
from fusion_decoder.fairqueue import FairQueue
from fusion_decoder.journal import Journal
from fusion_decoder.metrics import DecoderMetrics, GroupSeries
from fusion_decoder.runtime import JointDecoderRuntime
from ndsc.entropy import EntropyCodingError
from ndsc.wire import MAX_MESSAGE_BYTES

log = logging.getLogger("ndsc.decoder")

#: samples per source a batch of whole frames grows to at most (a larger frame is decoded alone): a
#: 741 × 500 stereo pair takes seconds on a CPU thread, and batching such frames gains nothing there
#: while every frame added is time a stop or a late window waits for. Windows of the bundle's shape
#: batch to ``max_batch`` as before.
BATCH_SAMPLES = 1 << 20


class DecodePipeline:
    """Aligners per group → bounded queue, fair across groups (:class:`FairQueue`) → batched decoding
    in a worker thread → sinks."""

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
        self.audits = AuditBook(metrics, known=self.aligners.__contains__)
        # served round-robin across groups: one group's backlog never delays another's windows
        self._queue: FairQueue[AlignedWindow] = FairQueue(lambda w: w.group, max(8 * max_batch, 256))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ndsc-decode")
        self._tasks: list[asyncio.Task] = []
        self._decoding = False  # a batch is in the worker thread (a bounded drain lets it finish)
        self._stopping = False  # the drain's budget is spent: the decode loop takes no further batch
        self._carried: AlignedWindow | None = None  # taken from the queue, too large for the last batch
        # the next batch, handed to the decoding thread while the event loop publishes the one before
        self._ahead: tuple[list[AlignedWindow], asyncio.Future, float] | None = None
        self._group_series: dict[str, GroupSeries] = {}
        # bundles with syndrome-coded sources: windows wait for belief propagation (and feedback) there
        self.binning: BinningStage | None = None
        if runtime.bundle.binning:
            self.binning = BinningStage(runtime.bundle, metrics, self._queue.put,
                                        lambda j, payload: runtime.entropy_decode(j, payload),
                                        timeout=max(2.0 * deadline, 1.0), left_view=runtime.decode_side_alone,
                                        device=str(runtime.device) if runtime.device.type == "cuda" else None)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._decode_loop()), asyncio.create_task(self._expiry_loop())]

    def aligner(self, group: str) -> Aligner:
        aligner = self.aligners.get(group)
        if aligner is None:
            aligner = self.aligners[group] = Aligner(group, self.runtime.n_sources, self.deadline)
            aligner.touched = time.monotonic()
        return aligner

    def _series(self, group: str) -> GroupSeries:
        series = self._group_series.get(group)
        if series is None:
            series = self._group_series[group] = GroupSeries(self.metrics, group)
        return series

    def forget(self, group: str) -> None:
        """Drop an evicted group's aligner, audit state and metric series (it holds no pending window)."""
        self.aligners.pop(group, None)
        self._group_series.pop(group, None)
        self.audits.forget(group)
        if self.binning is not None:
            self.binning.forget(group)

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
                  chunks: int = 1, shape: tuple[int, ...] | None = None, quality: str | None = None,
                  symbols: np.ndarray | None = None) -> str:
        """Hand one frame to its group's aligner; ``symbols``: its payload already entropy-decoded
        (the uplink's check), so decoding never repeats it. Returns the aligner's status."""
        result = self.hold(group, window, source, payload, capture_us, chunk=chunk, chunks=chunks, shape=shape,
                           quality=quality, symbols=symbols)
        await self.release(result.released)
        return result.status

    def hold(self, group: str, window: int, source: int, payload: bytes, capture_us: int, *, chunk: int = 0,
             chunks: int = 1, shape: tuple[int, ...] | None = None, quality: str | None = None,
             symbols: np.ndarray | None = None) -> AddResult:
        """:meth:`add` without queueing what it releases (hand ``released`` to :meth:`release`): no
        coroutine for the common frame, which releases nothing."""
        result = self.aligner(group).add(window, source, payload, capture_us, time.monotonic(), chunk=chunk,
                                         chunks=chunks, shape=shape, quality=quality, symbols=symbols)
        if result.status == "late":
            self.metrics.aligner_late.labels(group, str(source)).inc()
        return result

    async def release(self, windows: Sequence[AlignedWindow]) -> None:
        """Queue released windows for decoding, in order."""
        for w in windows:
            await self._enqueue(w)

    async def _enqueue(self, w: AlignedWindow) -> None:
        series = self._series(w.group)
        (series.complete if w.complete else series.partial).inc()
        series.aligner_wait.observe(w.released - w.first_arrival)
        for i in w.missing:
            self.metrics.aligner_missing.labels(w.group, str(i)).inc()
        for i in w.incomplete:
            self.metrics.incomplete_chunks.labels(w.group, str(i)).inc()
        if self.binning is not None and self.binning.needs(w):
            await self.binning.hold(w)  # on to the queue once its syndrome sources are decoded
            return
        await self._queue.put(w)

    async def _expiry_loop(self) -> None:
        tick = min(self.deadline / 4, 0.25)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for aligner in list(self.aligners.values()):
                for w in aligner.expire(now):
                    await self._enqueue(w)
            if self.binning is not None:
                await self.binning.expire(now)

    async def _decode_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._ahead is not None or not self._stopping:
            if self._ahead is not None:  # handed to the decoding thread while the last batch was published
                (batch, decoding, t0), self._ahead = self._ahead, None
            else:
                first = self._carried if self._carried is not None else await self._queue.get()
                self._carried = None
                batch, decoding, t0 = self._submit(loop, first)
            self._decoding = True
            try:
                await self._decode_and_publish(loop, batch, decoding, t0)
            except Exception:  # a bug outside the per-window guards must not kill the service
                log.exception("decoding %d windows failed", len(batch))
                self.metrics.window_failures.labels("decode").inc(len(batch))
            finally:
                self._decoding = False
                if self.binning is not None:  # journaled and published (or failed): the edges may forget them
                    self.binning.settle(batch)
                for _ in batch:
                    self._queue.task_done()

    def _submit(self, loop: asyncio.AbstractEventLoop,
                first: AlignedWindow) -> tuple[list[AlignedWindow], asyncio.Future, float]:
        """A batch (``first`` and the queued windows after it, up to ``max_batch`` windows and
        :data:`BATCH_SAMPLES` samples; the window that does not fit is carried to the next batch)
        handed to the decoding thread: (batch, its decoding, when it was handed over)."""
        batch = [first]
        samples = _frame_samples(first)
        while len(batch) < self.max_batch and not self._queue.empty():
            w = self._queue.get_nowait()
            samples += _frame_samples(w)
            if samples > BATCH_SAMPLES:
                self._carried = w  # the next batch's first (unfinished for the queue's join until then)
                break
            batch.append(w)
        now = time.monotonic()
        for w in batch:  # the decode queue's share of capture → reconstruction
            self._series(w.group).decode_queue_wait.observe(now - w.released)
        return batch, loop.run_in_executor(self._executor, self._decode, batch), time.perf_counter()

    def _start_next(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the next batch to the decoding thread now, when windows wait: it decodes while the
        event loop journals and publishes the batch before it, instead of idling until then."""
        if self._ahead is not None or self._stopping or (self._carried is None and self._queue.empty()):
            return
        first = self._carried if self._carried is not None else self._queue.get_nowait()
        self._carried = None
        self._ahead = self._submit(loop, first)

    async def _decode_and_publish(self, loop: asyncio.AbstractEventLoop, batch: list[AlignedWindow],
                                  decoding: asyncio.Future, t0: float) -> None:
        """Wait for one batch's decoding (``decoding``, handed to the thread at ``t0``), start the
        next, journal and publish this one; a window that fails any step is counted in
        ``ndsc_window_failures_total{stage}`` and dropped alone, never with its batch."""
        try:
            x_hat, present = await decoding
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
        self._start_next(loop)
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
        # symbols decoded at the uplink's check where there are some, else the payload bytes
        payloads = [[s if s is not None else p for p, s in zip(w.payloads, w.symbols or w.payloads)] for w in batch]
        qualities = [list(w.qualities) for w in batch]  # each source at its stream's operating point
        try:
            return self.runtime.decode_batch(payloads, shape, qualities)
        except EntropyCodingError:
            # A payload with a valid crc that does not decode (an encoder/bundle bug or a
            # forged frame): decode the rest, estimate that source as if missing.
            for w, row in zip(batch, payloads):
                for i, p in enumerate(row):
                    if p is None or isinstance(p, np.ndarray):
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
            series = self._series(w.group)
            for c in w.capture_us:
                if c:  # 0: unknown (outside the decoder's sane capture window), never a latency
                    series.capture_to_reconstruction.observe(max(0.0, now - c / 1e6))
            series.reconstructions.inc()
            if not present[b].all():  # some sources estimated (the common window has none)
                for i in np.flatnonzero(~present[b]):
                    self.metrics.estimated_sources.labels(w.group, str(i)).inc()
            self.audits.add_reconstruction(w.group, w.window, x_hat[b], present[b])

    async def drain(self, budget: float | None = None) -> int:
        """Release every held window, decode what is queued, end Subscribe streams; returns the
        windows left undecoded.

        ``budget``: seconds the queue may take to decode (None: every window, however long). Past it
        the batches in flight finish and the decoder takes no further one: with a journal the rest
        stay held there (their frames were acknowledged, a restart decodes them); without one they
        are dropped, counted in ``ndsc_window_failures_total{stage="stop"}`` and logged. A backlog of
        whole frames (seconds each on a CPU) so no longer holds a stop for minutes.
        """
        now = time.monotonic()
        for aligner in list(self.aligners.values()):
            for w in aligner.drain(now):
                await self._enqueue(w)
        if self.binning is not None:
            await self.binning.drain()
        left = 0
        try:
            await asyncio.wait_for(self._queue.join(), budget)
        except TimeoutError:
            left = await self._stop_decoding(budget)
        self.broadcaster.close()
        return left

    async def _stop_decoding(self, budget: float) -> int:
        """Let the batches in flight finish (the one decoding and the next, when it was handed to the
        decoding thread already), stop the decode loop; returns the windows it left queued."""
        self._stopping = True
        decode_loop = self._tasks[0]
        if not self._decoding:  # waiting for its next window: nothing of it to finish
            decode_loop.cancel()
        await asyncio.gather(decode_loop, return_exceptions=True)
        left = self._queue.qsize() + (self._carried is not None)
        if not left:  # the batch in flight was the last
            return 0
        if self.journal.enabled:
            log.info("stop: %d windows not decoded within %g s stay in the journal (decoded at the next start)",
                     left, budget)
        else:
            log.warning("stop: %d acknowledged windows not decoded within %g s are dropped (no --state-dir to "
                        "keep them)", left, budget)
            self.metrics.window_failures.labels("stop").inc(left)
        return left

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.binning is not None:
            await self.binning.close()
        self._executor.shutdown(wait=True)
        self.journal.close()


def _frame_samples(w: AlignedWindow) -> int:
    """Samples per source of a whole-frame window (C·H·W); 0 for a window of the bundle's shape."""
    return int(np.prod(w.shape)) if w.shape else 0
