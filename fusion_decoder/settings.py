"""Settings of the fusion decoder service (``ndsc decoder``), from flags and environment."""
from __future__ import annotations

from dataclasses import dataclass

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
    max_message_bytes: int = setting("NDSC_MAX_MESSAGE_BYTES", "gRPC max message size, both directions",
                                     16 * 1024 * 1024)

    def validate(self) -> "DecoderSettings":
        """Raise ValueError on settings the service cannot run with."""
        if not self.bundle:
            raise ValueError("a bundle is required (--bundle or NDSC_BUNDLE)")
        if self.deadline <= 0 or self.max_batch < 1:
            raise ValueError("deadline must be > 0 and max_batch >= 1")
        return self
