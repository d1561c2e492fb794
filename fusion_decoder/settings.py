"""Settings of the fusion decoder service (``ndsc decoder``), from flags and environment."""
from __future__ import annotations

from dataclasses import dataclass

from fusion_decoder.allocator import MAX_KEEP_MIB
from ndsc.wire.settings import setting


@dataclass
class DecoderSettings:
    """What ``ndsc decoder`` needs; every field is a flag and an ``NDSC_*`` variable."""

    bundle: str | None = setting("NDSC_BUNDLE", "model bundle directory (required)")
    listen: str = setting("NDSC_LISTEN", "gRPC listen address host:port (port 0 picks a free one)",
                          "127.0.0.1:50051")
    metrics_port: int = setting("NDSC_METRICS_PORT", "Prometheus /metrics port (0 picks a free one, -1 disables)",
                                9100)
    metrics_addr: str = setting("NDSC_METRICS_ADDR", "address the metrics endpoint binds", "127.0.0.1")
    device: str | None = setting("NDSC_DEVICE", "torch device of the joint decoder (default: cuda if present, "
                                 "else cpu)")
    deadline: float = setting("NDSC_DEADLINE", "seconds the aligner waits for a window's late nodes", 2.0)
    max_batch: int = setting("NDSC_MAX_BATCH", "windows per joint-decoder batch at most", 64)
    grace: float = setting("NDSC_GRACE", "seconds in-flight RPCs get at shutdown (held windows are drained first)",
                           5.0)
    drain_timeout: float | None = setting(
        "NDSC_DRAIN_TIMEOUT", "seconds a stop may spend decoding queued windows; past it the batch in flight "
        "finishes and the rest stay in the journal (with --state-dir) or are dropped and counted (without); "
        "unset: 10 with --state-dir, every window without")
    max_message_bytes: int = setting("NDSC_MAX_MESSAGE_BYTES", "gRPC max message size, both directions",
                                     16 * 1024 * 1024)

    tokens_file: str | None = setting(
        "NDSC_TOKENS_FILE", "per-node credentials, lines 'TOKEN GROUP NODE SOURCE' (TOKEN may be sha256:HEX); "
        "when set, every call needs 'authorization: Bearer TOKEN' bound to its group/node/source")
    tokens_generate: str | None = setting(
        "NDSC_TOKENS_GENERATE", "GROUP:NODE,NODE,...[;GROUP:...] (node k streams source k): at start, create the "
        "missing credentials beside --tokens-file (edges/GROUP__NODE.token, reader.token) and write --tokens-file "
        "from them (first start of compose; see docs/deploy.md)")
    tls_cert: str | None = setting("NDSC_TLS_CERT", "PEM server certificate: serve TLS (with --tls-key)")
    tls_key: str | None = setting("NDSC_TLS_KEY", "PEM private key of --tls-cert")
    tls_client_ca: str | None = setting("NDSC_TLS_CLIENT_CA", "PEM CA: require client certificates it signed "
                                        "(mutual TLS)")
    state_dir: str | None = setting(
        "NDSC_STATE_DIR", "directory of the journal (sessions, held frames, decoded windows) that makes a restart "
        "lose and repeat nothing; unset: in memory only")
    journal_sync: str = setting("NDSC_JOURNAL_SYNC", "journal durability: normal (survives a killed process) or "
                                "full (also an OS crash; fsync per commit)", "normal")
    max_seq_gap: int = setting("NDSC_MAX_SEQ_GAP", "refuse (OUT_OF_RANGE) a frame this many seqs beyond the "
                               "node's last held one", 1 << 20)
    max_frame_area: int = setting("NDSC_MAX_FRAME_AREA", "largest whole image frame, H*W pixels, a stream may "
                                  "announce (RESOURCE_EXHAUSTED beyond)", 3840 * 2160)
    max_chunks: int = setting("NDSC_MAX_CHUNKS", "most chunks one window's payload may be split into "
                              "(RESOURCE_EXHAUSTED beyond)", 4096)
    max_groups: int = setting("NDSC_MAX_GROUPS", "groups served at once; a new group beyond it is refused "
                              "(RESOURCE_EXHAUSTED)", 256)
    max_streams: int = setting("NDSC_MAX_STREAMS", "uplink streams open at once; beyond it a stream is refused "
                               "(RESOURCE_EXHAUSTED)", 1024)
    max_subscribers: int = setting("NDSC_MAX_SUBSCRIBERS", "Subscribe/SubscribeBatches streams open at once; "
                                   "beyond it one is refused (RESOURCE_EXHAUSTED)", 64)
    group_idle: float = setting("NDSC_GROUP_IDLE", "seconds a group with no open stream and no held window is "
                                "kept before its state is evicted", 300.0)
    stream_idle: float = setting("NDSC_STREAM_IDLE", "seconds an uplink stream may send nothing before it is "
                                 "ended (DEADLINE_EXCEEDED) and its source released", 60.0)
    ack_interval: float = setting("NDSC_ACK_INTERVAL", "seconds between one stream's Acks at least: a node "
                                  "sending faster gets one cumulative Ack per interval (0: one per read)", 0.025)
    switch_interval: float = setting(
        "NDSC_SWITCH_INTERVAL", "seconds a Python thread may hold the GIL while another waits (sys.setswitchinterval): "
        "short lets the decoding thread resume between its torch calls while the event loop is busy", 0.0005)
    heap_keep_mib: int = setting(
        "NDSC_HEAP_KEEP_MIB", "MiB of freed memory the decoder's heap keeps for the next batch instead of giving it "
        "back to the OS (glibc's mmap and trim thresholds: a batch's activations are not faulted in afresh on "
        "every call); 0: malloc's defaults", 256)
    event_loop: str = setting("NDSC_EVENT_LOOP", "event loop serving gRPC: uvloop (faster; asyncio's own where "
                              "uvloop is not installed) or asyncio", "uvloop")
    keepalive: float = setting("NDSC_KEEPALIVE", "seconds between HTTP/2 keepalive pings on each connection "
                               "(a peer silent 10 s after a ping is cut)", 30.0)
    max_capture_age: float = setting("NDSC_MAX_CAPTURE_AGE", "capture times older than this many seconds "
                                     "become unknown (counted, no latency)", 86400.0)
    max_capture_lead: float = setting("NDSC_MAX_CAPTURE_LEAD", "capture times this many seconds ahead of the "
                                      "decoder's clock become unknown (counted, no latency)", 60.0)
    max_label_groups: int = setting("NDSC_MAX_LABEL_GROUPS", "groups with their own metric series; later ones "
                                    "share group=\"_overflow\"", 128)
    max_label_nodes: int = setting("NDSC_MAX_LABEL_NODES", "(group, node) pairs with their own metric series; "
                                   "later ones share node=\"_overflow\"", 1024)
    log_burst: int = setting("NDSC_LOG_BURST", "refusal log lines one reason may write per --log-interval; the "
                             "rest are counted in ndsc_log_lines_suppressed_total", 5)
    log_interval: float = setting("NDSC_LOG_INTERVAL", "seconds over which --log-burst applies", 10.0)
    subscriber_queue: int = setting("NDSC_SUBSCRIBER_QUEUE", "reconstructions queued per Subscribe stream; "
                                    "beyond it the oldest are dropped (counted)", 4096)

    @property
    def tls(self) -> tuple[str, str, str | None] | None:
        return (self.tls_cert, self.tls_key, self.tls_client_ca) if self.tls_cert else None

    def validate(self) -> "DecoderSettings":
        """Raise ValueError on settings the service cannot run with."""
        if not self.bundle:
            raise ValueError("a bundle is required (--bundle or NDSC_BUNDLE)")
        if self.deadline <= 0 or self.max_batch < 1:
            raise ValueError("deadline must be > 0 and max_batch >= 1")
        if self.drain_timeout is not None and self.drain_timeout < 0:
            raise ValueError("drain_timeout must be >= 0")
        if bool(self.tls_cert) != bool(self.tls_key) or (self.tls_client_ca and not self.tls_cert):
            raise ValueError("TLS needs --tls-cert and --tls-key together (and both for --tls-client-ca)")
        if self.tokens_generate and not self.tokens_file:
            raise ValueError("--tokens-generate writes --tokens-file: set both")
        if self.journal_sync not in ("normal", "full"):
            raise ValueError("journal_sync must be normal or full")
        if self.max_frame_area < 1 or self.max_chunks < 1:
            raise ValueError("max_frame_area and max_chunks must be >= 1")
        if self.max_seq_gap < 1 or self.subscriber_queue < 1:
            raise ValueError("max_seq_gap and subscriber_queue must be >= 1")
        if min(self.max_groups, self.max_streams, self.max_subscribers, self.max_label_groups,
               self.max_label_nodes) < 1:
            raise ValueError("max_groups, max_streams, max_subscribers, max_label_groups and max_label_nodes "
                             "must be >= 1")
        if min(self.group_idle, self.stream_idle, self.keepalive, self.max_capture_age,
               self.max_capture_lead, self.log_interval) <= 0:
            raise ValueError("group_idle, stream_idle, keepalive, max_capture_age, max_capture_lead and "
                             "log_interval must be > 0")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise ValueError("event_loop must be uvloop or asyncio")
        if not 0 <= self.ack_interval <= 1:
            raise ValueError("ack_interval must be between 0 and 1 s")
        if not 1e-5 <= self.switch_interval <= 0.1:
            raise ValueError("switch_interval must be between 1e-5 and 0.1 s")
        if not 0 <= self.heap_keep_mib <= MAX_KEEP_MIB:
            raise ValueError(f"heap_keep_mib must be between 0 and {MAX_KEEP_MIB}")
        if self.log_burst < 1:
            raise ValueError("log_burst must be >= 1")
        return self
