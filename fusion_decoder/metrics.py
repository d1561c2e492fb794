"""Prometheus metrics of the fusion decoder (one registry per instance, never global).

Names follow Prometheus conventions: counters end in ``_total``, units are suffixes in base
units (``_seconds``, ``_bytes``). Documented exceptions, kept for dashboards: ``_db`` (PSNR),
``_percent`` (PRD), ``ndsc_audit_rmse`` / ``ndsc_audit_estimated_rmse`` in the source's
physical units, and counts without a unit (``_batch_size``, ``_frames_per_message``).
Rate is what crossed the wire (payload bytes); protocol overhead is counted apart as
serialized protobuf size minus payload bytes plus the 5-byte gRPC message prefix.

Bounded: ``group`` and ``node`` label values come from clients, so they pass through a
:class:`LabelBudget`; beyond its caps they read ``_overflow`` (never a valid name), and an
evicted group's series are removed. So the number of series, and a scrape's cost, has a
bound set by the decoder, whatever clients send. ``process_*`` metrics (RSS, CPU, open fds)
come from prometheus_client's process collector.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: label value standing for every group (or node) beyond the budget
OVERFLOW = "_overflow"


class LabelBudget:
    """Which client-chosen group and node names may become label values.

    The first ``max_groups`` groups (and ``max_nodes`` (group, node) pairs) seen keep their
    names; later ones read :data:`OVERFLOW` until :meth:`release` frees a slot (group eviction).
    """

    def __init__(self, max_groups: int = 128, max_nodes: int = 1024):
        self.max_groups, self.max_nodes = max_groups, max_nodes
        self._groups: set[str] = set()
        self._nodes: set[tuple[str, str]] = set()

    def group(self, group: str) -> str:
        if group in self._groups:
            return group
        if len(self._groups) < self.max_groups:
            self._groups.add(group)
            return group
        return OVERFLOW

    def node(self, group: str, node: str) -> str:
        if self.group(group) == OVERFLOW:
            return OVERFLOW
        key = (group, node)
        if key in self._nodes:
            return node
        if len(self._nodes) < self.max_nodes:
            self._nodes.add(key)
            return node
        return OVERFLOW

    def release(self, group: str) -> bool:
        """Free ``group``'s slots; True when it had its own label value."""
        self._nodes = {k for k in self._nodes if k[0] != group}
        if group in self._groups:
            self._groups.discard(group)
            return True
        return False


class _Budgeted:
    """A labelled metric whose ``group``/``node`` values pass through a :class:`LabelBudget`."""

    def __init__(self, metric, budget: LabelBudget, labelnames):
        self.metric = metric
        self._budget = budget
        names = list(labelnames)
        self._group = names.index("group")
        self._node = names.index("node") if "node" in names else None

    def labels(self, *values):
        values = list(values)
        group = values[self._group]
        values[self._group] = self._budget.group(group)
        if self._node is not None:
            values[self._node] = self._budget.node(group, values[self._node])
        return self.metric.labels(*values)

    def remove_group(self, group: str) -> None:
        """Drop every series whose group label is ``group``."""
        for values in [v for v in self.metric._metrics if v[self._group] == group]:
            self.metric.remove(*values)


class DecoderMetrics:
    """All decoder metrics, registered in ``registry``.

    Args:
        registry: where they are registered (also gets the ``process_*`` collector).
        max_label_groups, max_label_nodes: the :class:`LabelBudget` caps.
    """

    def __init__(self, registry: CollectorRegistry, max_label_groups: int = 128, max_label_nodes: int = 1024):
        self.registry = registry
        self.budget = LabelBudget(max_label_groups, max_label_nodes)
        self._budgeted: list[_Budgeted] = []
        ProcessCollector(registry=registry)
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
        self.decode_queue_wait = Histogram(
            "ndsc_decode_queue_seconds", "From a window's release by the aligner to its batch being handed to "
            "the decoding thread (a syndrome-coded window's hold in binning included: ndsc_feedback_seconds)",
            ["group"],
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
        self.log_suppressed = Counter(
            "ndsc_log_lines_suppressed", "Refusal log lines not written because their reason wrote its quota "
            "(--log-burst lines per --log-interval seconds); the next line of that reason states the count",
            ["reason"], registry=registry)
        self.bad_requests = Counter(
            "ndsc_bad_requests", "Request messages refused before reaching a handler: malformed protobuf, "
            "oversized; and Subscribe requests naming an invalid group (bad_group)", ["rpc", "reason"],
            registry=registry)
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
            "(frames stay held for a restart) or publish; stop: left undecoded by a stop past its drain "
            "budget without a journal", ["stage"], registry=registry)
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

        # binning (syndrome-coded sources): what decoding them cost, per source
        self.syndrome_bits = Counter(
            "ndsc_syndrome_bits", "Bits a syndrome-coded source sent, by kind: initial (its frames), requested "
            "(answers to feedback requests), direct (fallback payloads); all count in the rate",
            ["group", "source", "kind"], registry=registry)
        self.syndrome_requests = Counter(
            "ndsc_syndrome_requests", "Feedback requests sent to edges, by kind: more (syndrome bits), direct "
            "(fallback past the request bound)", ["group", "source", "kind"], registry=registry)
        self.syndrome_check_failures = Counter(
            "ndsc_syndrome_check_failures", "Belief-propagation results refused because the plane's check did not "
            "match (a wrong word that satisfied the syndrome bits received; more bits or the direct payload were "
            "asked for instead)", ["group", "source"], registry=registry)
        self.bp_iterations = Counter(
            "ndsc_bp_iterations", "Belief-propagation iterations spent decoding syndrome-coded sources",
            ["group", "source"], registry=registry)
        self.syndrome_windows = Counter(
            "ndsc_syndrome_windows", "Windows of syndrome-coded sources by outcome: decoded (by BP), fallback "
            "(by the direct payload), timeout (no answer in time: the source is estimated)",
            ["group", "source", "outcome"], registry=registry)
        self.feedback_seconds = Histogram(
            "ndsc_feedback_seconds", "Extra time windows of syndrome-coded sources spent in feedback, from their "
            "release by the aligner to their decoding (0 requests: BP time only)", ["group"],
            buckets=LATENCY_BUCKETS, registry=registry)

        # every metric labelled by group (and node) goes through the budget
        for name, metric in list(vars(self).items()):
            names = getattr(metric, "_labelnames", ())
            if "group" in names:
                wrapped = _Budgeted(metric, self.budget, names)
                self._budgeted.append(wrapped)
                setattr(self, name, wrapped)

    def forget_group(self, group: str) -> None:
        """Remove an evicted group's series and free its label slot."""
        if self.budget.release(group):
            for metric in self._budgeted:
                metric.remove_group(group)


class StreamSeries:
    """One uplink stream's metric series, resolved once when it opens: a ``labels()`` lookup
    costs ten times the increment, and the stream's labels do not change while it is open
    (its group cannot be evicted meanwhile, so the series stay registered).

    Counts of the stream's frames are added with :meth:`add` and reach Prometheus at
    :meth:`flush`, which the uplink calls before every Ack and when the stream ends: one
    locked increment per series per Ack instead of ten per message, and a node that has its
    Ack sees its frames counted.
    """

    def __init__(self, m: DecoderMetrics, group: str, node: str, source: int, quality: str):
        src = str(source)
        self.messages = m.uplink_messages.labels(group, node, src)
        self.payload_bytes = m.uplink_payload_bytes.labels(group, node, src)
        self.protocol_bytes = m.uplink_protocol_bytes.labels(group, node, src)
        self.frames_per_message = m.frames_per_message.labels(group)
        self.accepted_samples = m.accepted_samples.labels(group, src)
        self.accepted_payload_bytes = m.accepted_payload_bytes.labels(group, src)
        self.bits_per_sample = m.bits_per_sample.labels(group, src)
        self.quality_windows = m.quality_windows.labels(group, src, quality)  # unknown points refused at open
        self.quality_payload_bytes = m.quality_payload_bytes.labels(group, src, quality)
        self._frames_metric, self._group_node = m.frames, (group, node)
        self._frames: dict[str, object] = {}
        self._pending: dict[object, float] = {}  # series -> amount not yet added
        self._rate: list[int] | None = None  # (payload bytes, samples) behind bits_per_sample, to set at flush

    def add(self, series, amount: float = 1) -> None:
        """Count ``amount`` on ``series`` (one of this stream's counters) at the next :meth:`flush`."""
        self._pending[series] = self._pending.get(series, 0) + amount

    def rate_from(self, sums: list[int]) -> None:
        """Set ``bits_per_sample`` from these (payload bytes, samples) sums at the next :meth:`flush`."""
        self._rate = sums

    def flush(self) -> None:
        """Add every pending count to its series."""
        for series, amount in self._pending.items():
            series.inc(amount)
        self._pending.clear()
        if self._rate is not None and self._rate[1]:
            self.bits_per_sample.set(8.0 * self._rate[0] / self._rate[1])
        self._rate = None

    def frames(self, status: str):
        """The ``ndsc_frames_total`` series of this stream's node for ``status``."""
        series = self._frames.get(status)
        if series is None:
            series = self._frames[status] = self._frames_metric.labels(*self._group_node, status)
        return series


class GroupSeries:
    """The per-window series of one group (aligner release, publication), resolved once per
    group: every window of a group would otherwise look them up again. Dropped with the group."""

    def __init__(self, m: DecoderMetrics, group: str):
        self.complete = m.aligner_windows.labels(group, "complete")
        self.partial = m.aligner_windows.labels(group, "partial")
        self.aligner_wait = m.aligner_wait.labels(group)
        self.decode_queue_wait = m.decode_queue_wait.labels(group)
        self.capture_to_reconstruction = m.capture_to_reconstruction.labels(group)
        self.reconstructions = m.reconstructions.labels(group)
