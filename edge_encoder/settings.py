"""Settings of an edge node (``ndsc edge``), from flags and environment alike."""

from __future__ import annotations

from dataclasses import dataclass

from ndsc.wire import MAX_MESSAGE_BYTES
from ndsc.wire.limits import name_problem
from ndsc.wire.settings import setting


@dataclass
class EdgeSettings:
    """What one edge node needs; every field is a flag and an ``NDSC_*`` variable."""

    bundle: str | None = setting("NDSC_BUNDLE", "model bundle directory (required)")
    source_index: int = setting("NDSC_SOURCE_INDEX", "which of the bundle's sources this node codes", 0)
    quality: str | None = setting(
        "NDSC_QUALITY",
        "operating point of a variable-rate bundle (e.g. 1 = lowest rate; unset: the bundle's "
        "default); sent in the stream header. Fixed-rate bundles: leave unset",
    )
    source: str = setting("NDSC_SOURCE", "source spec scheme:args; 'bundle' replays the bundle's test split", "bundle")
    decoder: str = setting("NDSC_DECODER", "fusion decoder address host:port", "127.0.0.1:50051")
    group: str = setting("NDSC_GROUP", "sensor group decoded jointly", "default")
    node_id: str | None = setting("NDSC_NODE_ID", "node name, unique in the group (default node<source-index>)")
    metrics_port: int = setting("NDSC_METRICS_PORT", "Prometheus /metrics port (0 picks a free one, -1 disables)", 0)
    metrics_addr: str = setting("NDSC_METRICS_ADDR", "address the metrics endpoint binds", "127.0.0.1")
    fast: bool = setting("NDSC_FAST", "send as fast as possible instead of at the source's real-time pace", False)
    start_at: float | None = setting(
        "NDSC_START_AT",
        "shared pacing epoch, Unix seconds: window k of the stream is released (and stamped "
        "captured) at START_AT + (k+1)*period on every node given the same value; windows due before the node "
        "starts are skipped and counted (reason before_start). Default: the wall clock rounded down to a "
        "multiple of the window period",
    )
    flush_interval: float = setting(
        "NDSC_FLUSH_INTERVAL",
        "seconds a coded window may wait to share a message with later ones "
        "(0: send at once; larger: less overhead, more latency)",
        0.0,
    )
    max_windows: int | None = setting("NDSC_MAX_WINDOWS", "stop after this many windows (default: source end)")
    audit_every: int = setting("NDSC_AUDIT_EVERY", "send 1 in N raw windows for distortion metrics (0: never)", 100)
    buffer_frames: int = setting(
        "NDSC_BUFFER_FRAMES", "unacknowledged frames kept for resend; beyond it the oldest are dropped (counted)", 4096
    )
    max_batch_frames: int = setting("NDSC_MAX_BATCH_FRAMES", "frames per uplink message at most", 64)
    backoff_initial: float = setting("NDSC_BACKOFF_INITIAL", "first reconnect delay, seconds (doubles)", 0.1)
    backoff_max: float = setting("NDSC_BACKOFF_MAX", "largest reconnect delay, seconds", 5.0)
    max_message_bytes: int = setting("NDSC_MAX_MESSAGE_BYTES", "gRPC max message size", MAX_MESSAGE_BYTES)
    drain_timeout: float = setting(
        "NDSC_DRAIN_TIMEOUT",
        "after SIGINT/SIGTERM, seconds buffered frames get to be "
        "acknowledged (also while reconnecting) before the node exits",
        5.0,
    )
    max_chunk_bytes: int = setting(
        "NDSC_MAX_CHUNK_BYTES",
        "a window's payload larger than this travels as several frames (chunks) "
        "(0: the message size less 4 KiB of headroom)",
        0,
    )

    token: str | None = setting("NDSC_TOKEN", "this node's credential, sent as 'authorization: Bearer TOKEN'")
    token_file: str | None = setting("NDSC_TOKEN_FILE", "file holding the credential (e.g. a mounted secret)")
    tls: bool = setting("NDSC_TLS", "connect with TLS, trusting the system roots (implied by --tls-ca)", False)
    tls_ca: str | None = setting("NDSC_TLS_CA", "PEM CA that signed the decoder's certificate: connect with TLS")
    tls_cert: str | None = setting("NDSC_TLS_CERT", "PEM client certificate for mutual TLS (with --tls-key)")
    tls_key: str | None = setting("NDSC_TLS_KEY", "PEM private key of --tls-cert")

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.tls_ca or self.tls_cert)

    def credential(self) -> str | None:
        """The token (from --token, else the first line of --token-file)."""
        if self.token:
            return self.token
        if self.token_file:
            with open(self.token_file) as f:
                return f.readline().strip() or None
        return None

    @property
    def node_name(self) -> str:
        return self.node_id or f"node{self.source_index}"

    def validate(self) -> "EdgeSettings":
        """Raise ValueError on settings the node cannot run with."""
        if not self.bundle:
            raise ValueError("a bundle is required (--bundle or NDSC_BUNDLE)")
        if self.buffer_frames < 1 or self.max_batch_frames < 1 or self.flush_interval < 0:
            raise ValueError("buffer_frames and max_batch_frames must be >= 1, flush_interval >= 0")
        if self.max_chunk_bytes < 0 or self.drain_timeout < 0:
            raise ValueError("max_chunk_bytes and drain_timeout must be >= 0")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("mutual TLS needs --tls-cert and --tls-key together")
        for name, what in ((self.group, "group"), (self.node_name, "node id")):
            problem = name_problem(name, what)
            if problem:  # the decoder would refuse it (INVALID_ARGUMENT): say so before connecting
                raise ValueError(problem)
        return self
