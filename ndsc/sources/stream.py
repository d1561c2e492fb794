"""Live lead streams: raw little-endian int16 sample frames from a TCP socket or stdin.

A *sample frame* is one sampling instant: the node's C leads as C little-endian int16
values. Physical value (mV) = (digital − baseline) / gain, as in WFDB; the digital value
−32768 marks a missing sample (WFDB's convention) and becomes NaN.

Specs::

    tcp:HOST:PORT#fs=500,gain=1000        connect to a device (or another program) serving frames
    tcp:HOST:PORT#listen=1,...           accept one connection on HOST:PORT instead
    stdin:#fs=500,gain=200,leads=I,II,III

Options: ``fs`` (stream rate, Hz; required), ``gain`` (adu/mV; required), ``baseline``
(adu, 0), ``channels`` (must equal the node's C if given), ``leads`` (names, for display),
``rate`` (model rate the windows are resampled to, default 500 Hz), ``hop`` (model samples
between windows, default the window length), ``framing`` (``raw``: a bare sequence of
frames; ``block``: each block starts with ``uint16 channels, uint16 frames`` so a sender
with the wrong channel count is detected), ``timeout`` (seconds to connect, or to wait for
the sender with ``listen=1``).

Bad input never crashes the node: a block with the wrong channel count is dropped and
its samples count as missing; a window containing missing samples is yielded with NaN,
which the edge node rejects (``check_window``) and counts as a skipped window; a stream
that ends inside a frame or block ends the source. Each case is counted in
:attr:`StreamSource.stats` and logged.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import time
from typing import BinaryIO, Iterator

import numpy as np

from ndsc.sources.base import SourceError, Window, register_source
from ndsc.sources.ecg import DEFAULT_FS, parse_leads, parse_options, resample_signal

log = logging.getLogger(__name__)

#: WFDB's "no sample" value for 16-bit formats
MISSING = -32768
BLOCK_HEADER = struct.Struct("<HH")  # channels, frames


def encode_frames(signal_mv: np.ndarray, gain: float, baseline: int = 0) -> bytes:
    """(C, n) mV → n interleaved little-endian int16 frames (NaN → −32768; clipped)."""
    x = np.asarray(signal_mv, dtype=np.float64) * gain + baseline
    missing = ~np.isfinite(x)
    digital = np.clip(np.rint(np.where(missing, 0, x)), -32767, 32767).astype("<i2")
    digital[missing] = MISSING
    return np.ascontiguousarray(digital.T).tobytes()


def encode_block(signal_mv: np.ndarray, gain: float, baseline: int = 0) -> bytes:
    """One ``framing=block`` block: header (channels, frames) + frames."""
    c, n = np.shape(signal_mv)
    return BLOCK_HEADER.pack(c, n) + encode_frames(signal_mv, gain, baseline)


class StreamSource:
    """Windows of the node's leads read live from a byte stream of int16 frames.

    Args:
        open_stream: callable returning a readable binary file object (called on first use).
        channels: C, the node's leads.
        length: window length T at the model rate.
        fs: stream sample rate (Hz); rate: model sample rate (Hz).
        gain: adu per mV; baseline: adu at 0 mV.
        hop: model samples between window starts (default T).
        framing: ``raw`` or ``block``.
        channel_names: lead names.
    """

    def __init__(
        self,
        open_stream,
        channels: int,
        length: int,
        fs: float,
        gain: float,
        *,
        baseline: float = 0.0,
        rate: float = DEFAULT_FS,
        hop: int | None = None,
        framing: str = "raw",
        channel_names: tuple[str, ...] | None = None,
        describe: str = "stream",
    ):
        if not (np.isfinite(gain) and gain != 0):
            raise SourceError(f"gain must be a finite non-zero number of adu per mV, got {gain}")
        if not (np.isfinite(fs) and fs > 0 and np.isfinite(rate) and rate > 0):
            raise SourceError(f"sample rates must be positive, got fs={fs}, rate={rate}")
        if framing not in ("raw", "block"):
            raise SourceError(f"framing must be raw or block, got {framing!r}")
        self._open = open_stream
        self.channels, self.length, self.fs, self.rate = int(channels), int(length), float(fs), float(rate)
        self.gain, self.baseline, self.framing = float(gain), float(baseline), framing
        self.hop = int(hop or length)
        if not 0 < self.hop:
            raise SourceError("hop must be positive")
        # Window and hop in stream samples (equal to the model's when fs == rate).
        self.in_length = int(round(self.length * self.fs / self.rate))
        self.in_hop = int(round(self.hop * self.fs / self.rate))
        self.channel_names = channel_names or tuple(f"ch{i}" for i in range(self.channels))
        self.window_period = self.hop / self.rate
        self.describe = describe
        #: counters: windows yielded, of which with missing samples (NaN: the node skips and
        #: counts them), blocks dropped for a wrong channel count, streams that ended inside a
        #: frame/block, bytes read.
        self.stats = {"windows": 0, "missing_windows": 0, "wrong_channel_blocks": 0, "short_frames": 0, "bytes": 0}
        self.last_error: str | None = None

    # --- reading ------------------------------------------------------------------------
    def _note(self, key: str, message: str) -> None:
        self.stats[key] += 1
        self.last_error = message
        log.warning("%s: %s", self.describe, message)

    def _samples(self, f: BinaryIO) -> Iterator[np.ndarray]:
        """Yield (C, n) float mV chunks (NaN = missing) until the stream ends."""
        frame_bytes = 2 * self.channels
        chunk_frames = max(1, min(self.in_hop, 4096))
        while True:
            if self.framing == "block":
                head = f.read(BLOCK_HEADER.size)
                self.stats["bytes"] += len(head)
                if not head:
                    return
                if len(head) < BLOCK_HEADER.size:
                    self._note("short_frames", f"stream ended inside a block header ({len(head)} bytes)")
                    return
                c, n = BLOCK_HEADER.unpack(head)
                body = f.read(2 * c * n)
                self.stats["bytes"] += len(body)
                if len(body) < 2 * c * n:
                    self._note("short_frames", f"stream ended inside a block: {len(body)} of {2 * c * n} bytes")
                    return
                if c != self.channels:
                    self._note(
                        "wrong_channel_blocks",
                        f"block of {c} channels dropped (the node's encoder takes {self.channels}); "
                        f"its {n} samples count as missing",
                    )
                    yield np.full((self.channels, n), np.nan)
                    continue
                data = body
            else:
                data = f.read(chunk_frames * frame_bytes)
                self.stats["bytes"] += len(data)
                if not data:
                    return
                whole = len(data) - len(data) % frame_bytes
                if whole < len(data):
                    self._note(
                        "short_frames",
                        f"stream ended inside a frame: {len(data) - whole} trailing "
                        f"byte(s) of a {frame_bytes}-byte frame dropped",
                    )
                    data = data[:whole]
                    if not data:
                        return
            digital = np.frombuffer(data, dtype="<i2").reshape(-1, self.channels).T.astype(np.float64)
            mv = (digital - self.baseline) / self.gain
            mv[digital == MISSING] = np.nan
            yield mv
            if self.framing == "raw" and len(data) < chunk_frames * frame_bytes:
                return  # a short read on a blocking stream means end of stream

    def windows(self) -> Iterator[Window]:
        f = self._open()
        try:
            buf = np.zeros((self.channels, 0))
            consumed = 0  # stream samples dropped from the front of buf
            k = 0
            for chunk in self._samples(f):
                buf = np.concatenate([buf, chunk], axis=1)
                while buf.shape[1] >= (k * self.in_hop - consumed) + self.in_length:
                    lo = k * self.in_hop - consumed
                    w = buf[:, lo : lo + self.in_length]
                    if self.in_length != self.length:
                        w = resample_signal(w, self.fs, self.rate)
                    if not np.isfinite(w).all():
                        # Still yielded: the consumer's check (the edge node's check_window) rejects
                        # it and counts it (ndsc_edge_skipped_windows_total{reason="bad_window"}), and
                        # the window index stays aligned with the other nodes.
                        self._note("missing_windows", f"window {k} has missing or non-finite samples")
                    self.stats["windows"] += 1
                    yield Window(k, np.asarray(w, dtype=np.float32), time.time())
                    k += 1
                drop = max(0, k * self.in_hop - consumed)
                drop = min(drop, buf.shape[1])
                buf, consumed = buf[:, drop:], consumed + drop
        finally:
            close = getattr(f, "close", None)
            if close is not None and f is not getattr(sys.stdin, "buffer", None):
                close()


def _options(opts: dict[str, str], input_shape: tuple[int, ...]) -> dict:
    opts = dict(opts)
    if len(input_shape) != 2:
        raise SourceError(f"stream sources give (leads, samples) windows, the bundle expects {input_shape}")
    c, t = input_shape
    missing = [k for k in ("fs", "gain") if k not in opts]
    if missing:
        raise SourceError(f"a live stream needs {' and '.join(missing)} (e.g. #fs=500,gain=1000)")
    try:
        out = {
            "fs": float(opts.pop("fs")),
            "gain": float(opts.pop("gain")),
            "baseline": float(opts.pop("baseline", 0)),
            "rate": float(opts.pop("rate", DEFAULT_FS)),
            "hop": int(opts.pop("hop", t)),
            "framing": opts.pop("framing", "raw"),
            "timeout": float(opts.pop("timeout", 10)),
            "listen": opts.pop("listen", "0") in ("1", "true", "yes"),
        }
        channels = int(opts.pop("channels", c))
    except ValueError as exc:
        raise SourceError(f"bad stream option: {exc}") from exc
    if channels != c:
        raise SourceError(f"stream has {channels} channels, the node's encoder takes {c} leads")
    names = parse_leads(opts.pop("leads")) if "leads" in opts else None
    if names is not None and len(names) != c:
        raise SourceError(f"{len(names)} lead names given for {c} channels")
    if opts:
        raise SourceError(
            f"unknown stream options {sorted(opts)} (known: fs, gain, baseline, channels, leads, "
            f"rate, hop, framing, timeout, listen)"
        )
    out.update(channels=c, length=t, channel_names=names)
    return out


def _host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise SourceError(f"expected tcp:HOST:PORT, got tcp:{target}")
    return host, int(port)


def _tcp_opener(host: str, port: int, listen: bool, timeout: float):
    def open_stream() -> BinaryIO:
        if listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as server:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind((host, port))
                server.listen(1)
                server.settimeout(timeout)
                try:
                    conn, _ = server.accept()
                except socket.timeout as exc:
                    raise SourceError(f"no sender connected to {host}:{port} within {timeout} s") from exc
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    conn = socket.create_connection((host, port), timeout=timeout)
                    break
                except OSError as exc:
                    if time.monotonic() >= deadline:
                        raise SourceError(f"cannot connect to stream {host}:{port}: {exc}") from exc
                    time.sleep(0.1)
        conn.settimeout(None)  # a live device may pause; the node decides how long to wait
        return conn.makefile("rb")

    return open_stream


@register_source("tcp")
def _open_tcp(args: str, source_index: int, input_shape: tuple[int, ...]) -> StreamSource:
    """``tcp:HOST:PORT#fs=500,gain=1000[,listen=1,framing=block,...]``."""
    target, _, rest = args.partition("#")
    host, port = _host_port(target)
    o = _options(parse_options(rest), input_shape)
    opener = _tcp_opener(host, port, o.pop("listen"), o.pop("timeout"))
    c, t = o.pop("channels"), o.pop("length")
    return StreamSource(opener, c, t, describe=f"tcp:{host}:{port}", **o)


@register_source("stdin")
def _open_stdin(args: str, source_index: int, input_shape: tuple[int, ...]) -> StreamSource:
    """``stdin:#fs=500,gain=1000[,framing=block,...]``: frames piped into the node's stdin."""
    _, _, rest = args.partition("#")
    o = _options(parse_options(rest), input_shape)
    o.pop("listen"), o.pop("timeout")
    c, t = o.pop("channels"), o.pop("length")
    return StreamSource(lambda: sys.stdin.buffer, c, t, describe="stdin", **o)
