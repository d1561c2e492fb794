"""The binning stage: windows with syndrome-coded sources wait here between the aligner and the joint decoder.

A released window whose bundle has syndrome sources is held until each of them is decoded:
belief propagation (in a worker thread) with LLRs from the conditional model given the
side sources' symbols; when BP fails, a request for more accumulated-syndrome bits goes to
the source's live Uplink stream (a :class:`FeedbackOutbox` the servicer drains into Acks),
and the answer (:meth:`BinningStage.on_reply`) triggers the next attempt. Past the bundle's
``max_requests`` the request asks for the window's direct payload. A source whose edge does
not answer within ``timeout`` seconds is estimated like a missing one, so no undecoded window
reaches the joint decoder. A window is *settled* (``Ack.settled_below`` lets the edges forget
it) only once the pipeline has made its decoding durable (:meth:`settle`, after the journal's
batched commit): a decoder killed before that restores the window's frames and asks again,
and the edges still hold the answers. Only this module and :mod:`fusion_decoder.belief` know
binning; the servicer and the pipeline call :meth:`hold`, :meth:`attach`, :meth:`on_reply`
and :meth:`settle`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import grpc
import numpy as np

from fusion_decoder.aligner import AlignedWindow
from fusion_decoder.belief import BP, Request, SyndromeDecoder, WindowSyndrome
from fusion_decoder.fairqueue import FairExecutor
from fusion_decoder.metrics import DecoderMetrics
from fusion_decoder.stereo_frames import FrameState, StereoFrameDecoder
from fusion_decoder.stereo_tiles import PriorAnswer
from fusion_decoder.sessions import StreamRefused
from ndsc.binning import SyndromeError, unpack_bits
from ndsc.bundle import Bundle
from ndsc.entropy import EntropyCodingError
from ndsc.stereo_tiles import STEREO_TILES
from ndsc.wire import crc32, pb

log = logging.getLogger("ndsc.decoder")


class FeedbackOutbox:
    """Requests waiting to travel to one live stream of a syndrome source (drained into an Ack)."""

    def __init__(self) -> None:
        self.requests: list[pb.SyndromeRequest] = []
        self.ready = asyncio.Event()

    def push(self, requests: list[pb.SyndromeRequest]) -> None:
        self.requests.extend(requests)
        self.ready.set()

    def poke(self) -> None:
        """Something the edge should hear without a request (a window settled): send an Ack."""
        self.ready.set()

    def drain(self) -> list[pb.SyndromeRequest]:
        out, self.requests = self.requests, []
        self.ready.clear()
        return out


def _message(window: int, r: Request) -> pb.SyndromeRequest:
    return pb.SyndromeRequest(window=window, plane=r.plane, first_bit=r.first, end_bit=r.end, direct=r.direct)


@dataclass
class _Held:
    w: AlignedWindow
    states: dict[int, WindowSyndrome]  # unresolved syndrome sources
    released: float  # monotonic, when the stage took it
    asked: dict[int, float] = field(default_factory=dict)  # source → when its pending request was sent
    running: set[int] = field(default_factory=set)  # sources with an attempt in the worker


class BinningStage:
    """Holds windows until their syndrome sources are decoded (or estimated).

    Args:
        bundle: the decoder's bundle (its syndrome sources' binning records).
        metrics: where syndrome bits, requests, BP iterations and outcomes are counted.
        enqueue: hands a resolved window on to joint decoding.
        side_symbols: (source, payload bytes, frame shape) → symbols, for a side source whose
            symbols the uplink did not decode already (chunked payloads).
        timeout: seconds a request may wait for its answer before the source is estimated.
        max_held: windows held at most, all groups together; beyond it the oldest window of the group
            that holds the most is released with what it has (a group that floods the stage evicts
            its own windows, never another group's smaller share).
        bp: the belief-propagation function (None: ``ldpc`` when installed).
        left_view: a stereo-tiled source's side (:class:`StereoFrameDecoder`): the left view decoded alone.
        device: where a stereo-tiled source's likelihoods and BP run in torch (None: NumPy and ``ldpc``).
    """

    def __init__(self, bundle: Bundle, metrics: DecoderMetrics, enqueue: Callable[[AlignedWindow], Awaitable[None]],
                 side_symbols: Callable[[int, bytes], np.ndarray], timeout: float = 5.0, max_held: int = 4096,
                 bp: BP | None = None, left_view: Callable[..., np.ndarray] | None = None,
                 device: str | None = None):
        self.bundle = bundle
        self.metrics = metrics
        self._enqueue = enqueue
        self._side_symbols = side_symbols
        self.timeout = timeout
        self.max_held = max_held
        self.decoders: dict[int, SyndromeDecoder | StereoFrameDecoder] = {}
        for i, s in enumerate(bundle.sources):
            if s.binning is None:
                continue
            if s.binning.conditional.get("kind") == STEREO_TILES:  # a right camera's whole frames
                if left_view is None:
                    raise ValueError(f"source {s.name} is stereo-tiled: the stage needs the left view's decoder")
                self.decoders[i] = StereoFrameDecoder(bundle, i, left_view, bp, device)
            else:
                self.decoders[i] = SyndromeDecoder(s.binning, s.coder(), s.latent_shape, bp)
        self._held: dict[tuple[str, int], _Held] = {}
        self._held_by_group: dict[str, dict[int, _Held]] = {}  # the same windows per group, oldest first
        self._outboxes: dict[tuple[str, int], FeedbackOutbox] = {}
        self._pending: dict[tuple[str, int], dict[int, Request]] = {}  # (group, source) → window → request
        # windows released from this stage whose decoding is not durable yet (journaled, or published
        # without a journal): a restart would ask their syndromes again, so the edges must keep them
        self._unsettled: dict[str, set[int]] = {}
        # attempts run in turn across groups: a group with many windows waiting for BP delays another
        # group's next attempt by one attempt, not by its whole backlog
        self._executor = FairExecutor("ndsc-bp")
        # a stereo frame takes seconds to minutes of attempts: its own thread, so that windows of
        # sensor groups never wait behind a camera's frame
        self._frame_executor = FairExecutor("ndsc-stereo-bp")
        self._tasks: set[asyncio.Task] = set()

    # ----- windows in -----------------------------------------------------------------
    def needs(self, w: AlignedWindow) -> bool:
        """Whether ``w`` has a syndrome source's payload to decode."""
        return any(w.payloads[i] is not None for i in self.decoders)

    async def hold(self, w: AlignedWindow) -> None:
        """Take a released window; it goes on to ``enqueue`` once its syndrome sources are resolved."""
        states = {}
        for i, dec in self.decoders.items():
            payload = w.payloads[i]
            if payload is None:
                continue
            parsed = w.symbols[i] if w.symbols and isinstance(w.symbols[i], (dict, list)) else None
            try:
                if isinstance(dec, StereoFrameDecoder):
                    frame = w.shapes[i] if w.shapes else None
                    if frame is None:
                        raise SyndromeError("a stereo-tiled source codes whole frames")
                    latent = self.bundle.sources[i].frame_latent_shape(frame)
                    quality = w.qualities[i] if w.qualities else None
                    headers = parsed if parsed is not None else dec.parse(payload, latent, quality)
                    side = dec.side_sources[0]
                    side_quality = w.qualities[side] if w.qualities else None
                    states[i] = dec.start(headers, latent, frame, quality, side_quality)  # type: ignore[arg-type]
                else:
                    states[i] = dec.start(parsed if parsed is not None else dec.spec.split_payload(payload))
            except SyndromeError:  # a chunked payload checked only now: estimated like an undecodable one
                self.metrics.undecodable.labels(w.group, str(i)).inc()
                w.payloads[i] = None
                continue
            self.metrics.syndrome_bits.labels(w.group, str(i), "initial").inc(8 * len(payload))
        held = _Held(w, states, time.monotonic())
        self._held[(w.group, w.window)] = held
        self._held_by_group.setdefault(w.group, {})[w.window] = held
        while len(self._held) > self.max_held:
            largest = max(self._held_by_group.values(), key=len)
            oldest = next(iter(largest.values()))
            await self._give_up(oldest, list(oldest.states), "timeout")
        if not states:
            await self._release(held)
            return
        for i in list(states):
            self._spawn(self._attempt(held, i))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _side(self, w: AlignedWindow, source: int) -> np.ndarray | None:
        sides = self.decoders[source].spec.side_sources
        j = sides[0]  # the conditional table conditions on one side source
        if w.payloads[j] is None:
            return None
        sym = w.symbols[j] if w.symbols else None
        if isinstance(sym, np.ndarray):
            return sym
        try:
            return self._side_symbols(j, w.payloads[j])
        except EntropyCodingError:
            return None

    async def _attempt(self, held: _Held, source: int) -> None:
        w, state = held.w, held.states.get(source)
        if state is None or source in held.running:
            return
        held.running.add(source)
        try:
            dec = self.decoders[source]
            executor = self._frame_executor if isinstance(dec, StereoFrameDecoder) else self._executor
            outcome = await asyncio.wrap_future(executor.submit(w.group, dec.attempt, state, self._side(w, source)))
        except Exception:  # a bug or a payload the coder refuses: this source only is estimated
            log.exception("decoding syndrome source %d of window %d failed", source, w.window)
            held.running.discard(source)
            await self._give_up(held, [source], "timeout")
            return
        held.running.discard(source)
        group, src = w.group, str(source)
        if outcome.iterations:
            self.metrics.bp_iterations.labels(group, src).inc(outcome.iterations)
        if outcome.check_failed:
            self.metrics.syndrome_check_failures.labels(group, src).inc()
        if (group, w.window) not in self._held:  # given up meanwhile (timeout, eviction)
            return
        if outcome.symbols is not None:
            frame = w.shapes[source] if w.shapes else None
            info = self.bundle.sources[source]
            w.symbols[source] = outcome.symbols.reshape(
                info.frame_latent_shape(frame) if frame is not None and info.whole_frames else info.latent_shape)
            self.metrics.syndrome_windows.labels(group, src, "fallback" if state.direct else "decoded").inc()
            del held.states[source]
            self._pending.get((group, source), {}).pop(w.window, None)
            if not held.states:
                await self._release(held)
            return
        request = outcome.request
        assert request is not None
        state.requests += 1
        state.pending = request
        held.asked[source] = time.monotonic()
        self._pending.setdefault((group, source), {})[w.window] = request
        self.metrics.syndrome_requests.labels(group, src, "direct" if request.direct else "more").inc()
        outbox = self._outboxes.get((group, source))
        if outbox is not None:
            outbox.push([_message(w.window, request)])

    async def _release(self, held: _Held) -> None:
        w = held.w
        if self._held.pop((w.group, w.window), None) is None:
            return
        of_group = self._held_by_group[w.group]
        del of_group[w.window]
        if not of_group:
            del self._held_by_group[w.group]
        self.metrics.feedback_seconds.labels(w.group).observe(time.monotonic() - held.released)
        # not settled yet: only once its decoding is durable (:meth:`settle`, after the journal's batched commit)
        self._unsettled.setdefault(w.group, set()).add(w.window)
        await self._enqueue(w)

    def settle(self, windows: list[AlignedWindow]) -> None:
        """``windows`` left the decoder for good (journaled and published, or dropped as failed):
        the edges may forget them; each syndrome stream of their groups hears it in an Ack."""
        groups = set()
        for w in windows:
            unsettled = self._unsettled.get(w.group)
            if unsettled is not None and w.window in unsettled:
                unsettled.discard(w.window)
                groups.add(w.group)
        for group in groups:
            for i in self.decoders:
                outbox = self._outboxes.get((group, i))
                if outbox is not None:
                    outbox.poke()

    async def _give_up(self, held: _Held, sources: list[int], outcome: str) -> None:
        """Estimate ``sources`` of the window (their edge did not answer) and release it."""
        w = held.w
        for i in sources:
            held.states.pop(i, None)
            self._pending.get((w.group, i), {}).pop(w.window, None)
            w.payloads[i] = None
            w.symbols[i] = None
            self.metrics.syndrome_windows.labels(w.group, str(i), outcome).inc()
        await self._release(held)

    async def expire(self, now: float | None = None) -> None:
        """Estimate sources whose request waited longer than ``timeout`` (their edge is gone)."""
        now = time.monotonic() if now is None else now
        for held in list(self._held.values()):
            late = [i for i, t in held.asked.items() if i in held.states and i not in held.running
                    and now - t > self.timeout]
            if late:
                await self._give_up(held, late, "timeout")

    # ----- the edge's side ----------------------------------------------------------------
    def attach(self, group: str, source: int) -> FeedbackOutbox:
        """A stream of ``source`` opened: requests go to it from now on (the pending ones at once)."""
        outbox = self._outboxes[(group, source)] = FeedbackOutbox()
        pending = self._pending.get((group, source), {})
        if pending:
            outbox.push([_message(window, r) for window, r in sorted(pending.items())])
        return outbox

    def detach(self, group: str, source: int, outbox: FeedbackOutbox) -> None:
        if self._outboxes.get((group, source)) is outbox:
            del self._outboxes[(group, source)]

    def settled_below(self, group: str, source: int, last_window: int) -> int:
        """No request will come for a window below this index (the edge may forget them)."""
        waiting = [w for w, h in self._held_by_group.get(group, {}).items() if source in h.states]
        waiting.extend(self._unsettled.get(group, ()))
        return min(waiting) if waiting else last_window + 1

    async def on_reply(self, group: str, source: int, block: pb.SyndromeBlock) -> StreamRefused | None:
        """Take one answer from the stream of (``group``, ``source``); a refusal for a block that
        answers no pending request, fails its crc, or does not fit the request (a direct payload
        whose symbols contradict the window's plane checks included)."""
        where = f"syndrome block for window {block.window} (plane {block.plane}, bits [{block.first_bit}, " \
                f"{block.end_bit}), direct {block.direct})"
        if crc32(block.bits) != block.crc32:
            return StreamRefused(grpc.StatusCode.DATA_LOSS, "crc_mismatch", f"{where}: crc32 mismatch")
        request = self._pending.get((group, source), {}).get(block.window)
        asked = Request(block.plane, block.first_bit, block.end_bit, block.direct)
        if block.direct:
            asked = Request(direct=True)
        if request is None or request != asked:
            return StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "unrequested_syndrome",
                                 f"{where}: answers no pending request")
        held = self._held.get((group, block.window))
        dec = self.decoders[source]
        if held is None or source not in held.states or source in held.running:
            return None  # given up meanwhile: a late answer is harmless
        try:
            if isinstance(dec, StereoFrameDecoder):
                # a whole frame's payload, or a plane of up to 2^16 bits entropy-decoded against the
                # prior: checked off the event loop (other groups' windows wait on it)
                answer = await asyncio.to_thread(self._read_frame_answer, dec, request, bytes(block.bits),
                                                 held.states[source])
                if self._pending.get((group, source), {}).get(block.window) != request or \
                        self._held.get((group, block.window)) is not held or source not in held.states:
                    return None  # given up, or answered by another stream, meanwhile
            elif request.direct:
                symbols = dec.coder.decode(block.bits, dec.spec.n // dec.latent_shape[0])
                # the fallback is the edge's own symbols: planes whose check it contradicts mean a forged
                # or corrupt check (or payload); refused rather than output either way
                wrong = dec.spec.mismatched_planes(symbols, held.states[source].checks)
                if wrong:
                    raise SyndromeError(f"the direct payload contradicts the check of plane(s) {wrong} "
                                        "in the window's payload")
                answer = bytes(block.bits)
            else:
                answer = unpack_bits(block.bits, request.end - request.first)
        except (SyndromeError, EntropyCodingError) as exc:
            return StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_syndrome", f"{where}: {exc}")
        self.metrics.syndrome_bits.labels(group, str(source), "direct" if request.direct else "requested").inc(
            8 * len(block.bits))
        state = held.states[source]
        state.pending = None
        held.asked.pop(source, None)
        del self._pending[(group, source)][block.window]
        dec.take(state, request, answer)  # type: ignore[arg-type]
        self._spawn(self._attempt(held, source))
        return None

    @staticmethod
    def _read_frame_answer(dec: StereoFrameDecoder, request: Request, data: bytes,
                           state: FrameState) -> bytes | np.ndarray | PriorAnswer:
        """A stereo frame's answer, checked: the direct payload against every tile's plane checks, a
        prior-coded plane decoded and checked (SyndromeError or EntropyCodingError when it does not fit)."""
        if request.direct:
            return dec.read_direct(state, data)
        return dec.unpack(request, data, state)

    async def drain(self) -> None:
        """Shutdown: give held windows ``timeout`` seconds to be answered, then estimate what is left."""
        end = time.monotonic() + self.timeout
        while self._held and time.monotonic() < end:
            await asyncio.sleep(0.05)
        for held in list(self._held.values()):
            await self._give_up(held, list(held.states), "timeout")

    def forget(self, group: str) -> None:
        """An evicted group: drop what it still has pending (its windows were released)."""
        for key in [k for k in self._pending if k[0] == group]:
            del self._pending[key]
        self._unsettled.pop(group, None)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)
        self._frame_executor.shutdown(wait=True)
