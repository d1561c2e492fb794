"""Prometheus metrics of the fusion decoder (one registry per instance, never global).

Names follow Prometheus conventions: counters end in ``_total``, units are suffixes.
Rate is what crossed the wire (payload bytes); protocol overhead is counted apart as
serialized protobuf size minus payload bytes plus the 5-byte gRPC message prefix.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class DecoderMetrics:
    """All decoder metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        node = ["group", "node", "source"]
        self.uplink_payload_bytes = Counter(
            "ndsc_uplink_payload_bytes", "Coded payload bytes received (every frame that crossed the wire)",
            node, registry=registry)
        self.uplink_protocol_bytes = Counter(
            "ndsc_uplink_protocol_bytes",
            "Uplink bytes beyond payloads: protobuf fields + 5-byte gRPC message prefix (HTTP/2 framing excluded)",
            node, registry=registry)
        self.uplink_messages = Counter("ndsc_uplink_messages", "Uplink gRPC messages received", node,
                                       registry=registry)
        self.frames_per_message = Histogram(
            "ndsc_uplink_frames_per_message", "Frames per uplink FrameBatch (the edge's batching)", ["group"],
            buckets=BATCH_BUCKETS, registry=registry)
        self.edge_flush_interval = Gauge(
            "ndsc_uplink_flush_interval_seconds", "Flush interval each edge reported in its stream header",
            node, registry=registry)
        self.frames = Counter(
            "ndsc_frames", "Uplink frames (chunks) by outcome: accepted, duplicate, crc_mismatch, lost (seq gap), "
            "undecodable, frame_shape_mismatch, bad_chunk, capture_time_out_of_range (kept, capture time unknown)",
            ["group", "node", "status"], registry=registry)
        self.undecodable = Counter(
            "ndsc_undecodable_frames", "Frames with a valid crc whose payload does not entropy-decode",
            ["group", "source"], registry=registry)
        self.incomplete_chunks = Counter(
            "ndsc_incomplete_chunk_sets", "Windows released while a source's chunks were incomplete (that "
            "source estimated, like a missing one)", ["group", "source"], registry=registry)
        self.streams_rejected = Counter(
            "ndsc_streams_rejected", "Uplink streams refused, by reason", ["reason"], registry=registry)
        self.node_restarts = Counter(
            "ndsc_node_restarts", "Nodes that came back as a new process (new incarnation: seqs restart at 1)",
            ["group", "node"], registry=registry)
        self.active_streams = Gauge("ndsc_active_streams", "Open uplink streams", ["group"], registry=registry)
        self.accepted_samples = Counter(
            "ndsc_uplink_samples", "Input samples represented by accepted frames", ["group", "source"],
            registry=registry)
        self.accepted_payload_bytes = Counter(
            "ndsc_uplink_accepted_payload_bytes", "Payload bytes of accepted frames", ["group", "source"],
            registry=registry)
        self.bits_per_sample = Gauge(
            "ndsc_bits_per_sample", "Real rate of accepted frames: 8 x payload bytes / samples", ["group", "source"],
            registry=registry)
        # variable-rate bundles: what each operating point costs (fixed-rate bundles: quality="")
        self.quality_windows = Counter(
            "ndsc_quality_windows", "Accepted windows by the operating point their stream coded them at",
            ["group", "source", "quality"], registry=registry)
        self.quality_payload_bytes = Counter(
            "ndsc_quality_payload_bytes", "Payload bytes of accepted frames by operating point",
            ["group", "source", "quality"], registry=registry)
        self.decode_seconds = Histogram("ndsc_decode_seconds", "Entropy + joint decoding time per batch",
                                        buckets=LATENCY_BUCKETS, registry=registry)
        self.decode_batch_size = Histogram("ndsc_decode_batch_size", "Windows per joint-decoder batch",
                                           buckets=BATCH_BUCKETS, registry=registry)
        self.capture_to_reconstruction = Histogram(
            "ndsc_capture_to_reconstruction_seconds", "Per frame: reconstruction time minus capture time",
            ["group"], buckets=LATENCY_BUCKETS, registry=registry)
        self.reconstructions = Counter("ndsc_reconstructions", "Windows reconstructed", ["group"],
                                       registry=registry)
        self.aligner_wait = Histogram(
            "ndsc_aligner_wait_seconds", "From a window's first frame to its release by the aligner", ["group"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self.aligner_windows = Counter(
            "ndsc_aligner_windows", "Windows released by the aligner: complete, or partial (deadline/drain)",
            ["group", "outcome"], registry=registry)
        self.aligner_late = Counter(
            "ndsc_aligner_late_frames", "Frames arriving after their window was released", ["group", "source"],
            registry=registry)
        self.aligner_missing = Counter(
            "ndsc_aligner_missing_sources", "Sources missing from a released window (estimated, not decoded)",
            ["group", "source"], registry=registry)
        self.auth_failures = Counter(
            "ndsc_auth_failures", "Calls refused for their credential: missing_token, unknown_token, "
            "wrong_binding (a token used for another group/node/source)", ["rpc", "reason"], registry=registry)
        self.bad_requests = Counter(
            "ndsc_bad_requests", "Request messages refused before reaching a handler: malformed protobuf, "
            "oversized", ["rpc", "reason"], registry=registry)
        self.estimated_sources = Counter(
            "ndsc_estimated_sources", "Sources of published windows estimated from the others instead of decoded "
            "(node missing at the deadline, or its payload undecodable)", ["group", "source"], registry=registry)
        self.journal_seconds = Histogram(
            "ndsc_journal_commit_seconds", "Time to make accepted frames or decoded windows durable (state dir)",
            ["kind"], buckets=LATENCY_BUCKETS, registry=registry)
        self.journal_restored_frames = Counter(
            "ndsc_journal_restored_frames", "Held frames read back from the journal at start", registry=registry)
        self.window_failures = Counter(
            "ndsc_window_failures", "Windows dropped alone because a step failed for them: decode, journal "
            "(frames stay held for a restart) or publish", ["stage"], registry=registry)
        self.groups = Gauge("ndsc_groups", "Groups the decoder holds state for", registry=registry)
        self.groups_evicted = Counter(
            "ndsc_groups_evicted", "Groups forgotten after no stream, frame or held window for --group-idle seconds",
            registry=registry)
        self.subscribers = Gauge("ndsc_subscribers", "Open Subscribe streams", registry=registry)
        self.subscriber_dropped = Counter(
            "ndsc_subscriber_dropped", "Reconstructions dropped (oldest first) because a subscriber was too slow",
            registry=registry)
        self.audit_windows = Counter("ndsc_audit_windows", "Audited raw windows matched with their reconstruction",
                                     ["group", "source"], registry=registry)
        self.audit_bytes = Counter(
            "ndsc_audit_bytes", "Raw audit bytes received (apart from the rate)", ["group", "node", "source"],
            registry=registry)
        self.audit_rejected = Counter("ndsc_audit_rejected", "Audit windows refused, by reason", ["reason"],
                                      registry=registry)
        self.audit_estimated_windows = Counter(
            "ndsc_audit_estimated_windows", "Audited windows whose source was estimated, not decoded",
            ["group", "source"], registry=registry)
        self.audit_estimated_rmse = Gauge(
            "ndsc_audit_estimated_rmse", "RMSE over audited windows where the source was estimated (node missing)",
            ["group", "source"], registry=registry)
        self.audit_estimated_prd = Gauge(
            "ndsc_audit_estimated_prd_percent", "PRD over audited windows where the source was estimated",
            ["group", "source"], registry=registry)
        self.audit_psnr = Gauge("ndsc_audit_psnr_db", "PSNR over audited windows where the source was decoded "
                                "(peak = audited range)",
                                ["group", "source"], registry=registry)
        self.audit_rmse = Gauge("ndsc_audit_rmse", "RMSE over audited windows where the source was decoded "
                                "(physical units; estimated sources: ndsc_audit_estimated_rmse)",
                                ["group", "source"], registry=registry)
        self.audit_prd = Gauge("ndsc_audit_prd_percent", "PRD over audited windows where the source was decoded",
                               ["group", "source"],
                               registry=registry)
