"""Per-node uplink sessions: header checks, resume point, groups and their bounds.

Plain logic without sockets. A session outlives its stream, so a node that
reconnects gets an Ack with the last seq already held and resends only what follows.
Sessions live in memory and, with a state directory, in :mod:`fusion_decoder.journal`
(restored by :meth:`SessionTable.restore`), so a restarted decoder resumes every node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import grpc

from ndsc.bundle import Bundle, BundleError
from ndsc.wire import FrameData, pb
from ndsc.wire.limits import name_problem


class StreamRefused(Exception):
    """A stream or frame the decoder refuses: a precise gRPC status plus a metric reason."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


#: hook for per-node credentials (issue 9): called with the header and the call's
#: invocation metadata; raises StreamRefused (e.g. UNAUTHENTICATED) to refuse.
Authorizer = Callable[[pb.StreamHeader, Sequence[tuple[str, str]]], None]


@dataclass
class NodeSession:
    """What the decoder remembers about one node across its streams."""

    group: str
    node_id: str
    source_index: int
    last_seq: int = 0  # last contiguous seq held (0: none); seqs start at 1
    active: bool = False
    incarnation: int = 0  # the node process's random id (StreamHeader.incarnation)
    last_window: int = -1  # window index of the frame at last_seq (windows only increase)
    frame_shape: tuple[int, ...] = ()  # input shape of the current stream's frames (its header)
    latent_shape: tuple[int, ...] = ()  # their latent shape
    quality: str = ""  # the current stream's operating point, resolved ("" for a fixed-rate bundle)
    # chunk index and count of the frame at last_seq (-1, 0: unknown, e.g. restored from the journal)
    last_chunk: int = -1
    last_chunks: int = 0
    touched: float = 0.0  # monotonic time of its last header, frame or stream end (idle eviction)

    def commit(self, frame: FrameData) -> int:
        """Hold ``frame`` (already checked); returns how many seqs were skipped before it."""
        lost = frame.seq - self.last_seq - 1
        self.last_seq = frame.seq
        self.last_window = frame.window
        self.last_chunk, self.last_chunks = frame.chunk, frame.chunks
        return lost


#: default largest whole frame (H·W pixels) a stream may announce: 4K UHD
MAX_FRAME_AREA = 3840 * 2160


class SessionTable:
    """All node sessions of one decoder, checked against its bundle.

    Args:
        bundle: the decoder's bundle.
        authorize: per-node credential check.
        max_frame_area: largest H·W a whole-frame stream may announce (RESOURCE_EXHAUSTED beyond).
    """

    def __init__(self, bundle: Bundle, authorize: Authorizer | None = None, max_frame_area: int = MAX_FRAME_AREA,
                 max_groups: int = 256, max_nodes_per_group: int = 64):
        self.bundle = bundle
        self.authorize = authorize
        self.max_frame_area = max_frame_area
        self.max_groups = max_groups
        # node ids are client-chosen: beyond this many sessions a group forgets its stalest inactive ones
        self.max_nodes_per_group = max(max_nodes_per_group, bundle.n_sources)
        self._sessions: dict[tuple[str, str], NodeSession] = {}
        self.restarts = 0  # sessions replaced because their node process restarted

    def restore(self, sessions: Sequence[NodeSession]) -> None:
        """Sessions read back from the journal at start (none active)."""
        for s in sessions:
            self._sessions[(s.group, s.node_id)] = s

    def groups(self) -> list[str]:
        return sorted({g for g, _ in self._sessions})

    def idle_groups(self, before: float) -> list[str]:
        """Groups whose every session is inactive and untouched since ``before`` (monotonic)."""
        busy = {s.group for s in self._sessions.values() if s.active or s.touched >= before}
        return sorted({g for g, _ in self._sessions} - busy)

    def evict(self, group: str) -> int:
        """Forget every session of ``group`` (a node that comes back later starts afresh at its
        next seq; the gap is counted as lost). Returns how many sessions were dropped."""
        keys = [k for k in self._sessions if k[0] == group]
        for k in keys:
            del self._sessions[k]
        return len(keys)

    def open(self, header: pb.StreamHeader, metadata: Sequence[tuple[str, str]] = ()) -> NodeSession:
        """Check a stream header and return the node's (possibly resumed) session.

        A header with the session's incarnation resumes it (Ack = last seq held); a new
        incarnation (the node process restarted) starts a fresh session at seq 0.

        Raises:
            StreamRefused: what ``authorize`` raises (UNAUTHENTICATED, PERMISSION_DENIED), checked
                first; FAILED_PRECONDITION for another bundle id; INVALID_ARGUMENT
                for a missing node id, a group or node name outside the allowed characters
                and length, incarnation 0, an out-of-range source index, wrong shapes or a
                quality point the bundle lacks (reason ``unknown_quality``);
                RESOURCE_EXHAUSTED for a whole frame over ``max_frame_area`` or a new group
                beyond ``max_groups``; ALREADY_EXISTS when another live node holds the same
                source of the group.
        """
        bundle = self.bundle
        if self.authorize is not None:  # first: an unauthenticated caller learns nothing about the decoder
            self.authorize(header, metadata)
        if header.bundle_id != bundle.bundle_id:
            raise StreamRefused(grpc.StatusCode.FAILED_PRECONDITION, "bundle_mismatch",
                                f"node bundle {header.bundle_id!r} differs from the decoder's {bundle.bundle_id!r}")
        if not header.node_id:
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_header", "stream header has no node_id")
        group = header.group or "default"
        for name, what, reason in ((group, "group", "bad_group"), (header.node_id, "node_id", "bad_node_id")):
            problem = name_problem(name, what)
            if problem:
                raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, reason, problem)
        if header.incarnation == 0:
            # 0 is the proto default: a client that never sets it would look like the same
            # process forever, and a restart's new seqs would be dropped as duplicates
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "bad_incarnation",
                                "incarnation 0 is reserved: send a random non-zero 64-bit id per node process")
        if header.source_index >= bundle.n_sources:
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "unknown_source",
                                f"source_index {header.source_index} out of range 0..{bundle.n_sources - 1}")
        info = bundle.sources[header.source_index]
        frame_shape, latent_shape = self._check_shapes(header, info)
        quality = self._check_quality(header, info)
        groups = self._groups()
        if group not in groups and len(groups) >= self.max_groups:
            raise StreamRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_groups",
                                f"the decoder serves at most {self.max_groups} groups; {group!r} would be one more "
                                "(idle groups are evicted)")
        for (g, nid), other in self._sessions.items():
            if g == group and nid != header.node_id and other.source_index == header.source_index and other.active:
                raise StreamRefused(grpc.StatusCode.ALREADY_EXISTS, "source_taken",
                                    f"source {header.source_index} of group {group!r} is streamed by node {nid!r}")
        key = (group, header.node_id)
        session = self._sessions.get(key)
        if (session is None or session.source_index != header.source_index
                or session.incarnation != header.incarnation):
            # new node, or the node process restarted: its seqs start again at 1
            self.restarts += session is not None
            if session is None:
                self._make_room(group)
            session = NodeSession(group, header.node_id, header.source_index, incarnation=header.incarnation)
            self._sessions[key] = session
        session.frame_shape, session.latent_shape = frame_shape, latent_shape
        session.quality = quality  # a reconnect at another point codes its new frames at that point
        return session

    @staticmethod
    def _check_quality(header: pb.StreamHeader, info) -> str:
        """The header's operating point resolved against source ``info`` (empty: the default;
        "" for a fixed-rate source), so metrics and the journal name the point actually used."""
        try:
            point = info.quality(header.quality or None)
        except BundleError as exc:  # its message names the points the source has
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "unknown_quality", str(exc)) from None
        return point.name if point else ""

    def _make_room(self, group: str) -> None:
        """Forget ``group``'s least recently used inactive sessions so one more fits (at most one
        node per source is active, and ``max_nodes_per_group`` ≥ sources, so room can always be made)."""
        mine = sorted((s.touched, k) for k, s in self._sessions.items() if k[0] == group and not s.active)
        extra = sum(1 for k in self._sessions if k[0] == group) + 1 - self.max_nodes_per_group
        for _, key in mine[:max(extra, 0)]:
            del self._sessions[key]

    def _groups(self) -> set[str]:
        return {g for g, _ in self._sessions}

    def _check_shapes(self, header: pb.StreamHeader, info) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(input, latent) shapes of a header, checked against the bundle's source ``info``.

        Tile mode: exactly the bundle's shapes. Whole frames (``info.whole_frames``): (C, H, W)
        with the bundle's C, H·W ≤ ``max_frame_area``, latents (M, ⌈H/s⌉, ⌈W/s⌉).
        """
        shape, latent = tuple(header.input_shape), tuple(header.latent_shape)
        if shape == info.input_shape and latent == info.latent_shape:
            return shape, latent
        if info.accepts_frame(shape):
            if shape[1] * shape[2] > self.max_frame_area:
                raise StreamRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, "frame_too_large",
                                    f"frame {shape[1]}x{shape[2]} exceeds the decoder's maximum frame area of "
                                    f"{self.max_frame_area} pixels")
            expected = info.frame_latent_shape(shape)
            if latent == expected:
                return shape, latent
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "shape_mismatch",
                                f"latent shape {latent} of a {shape} frame != {expected} (stride {info.frame_stride})")
        whole = f" or a whole frame ({info.input_shape[0]}, H, W)" if info.whole_frames else ""
        raise StreamRefused(
            grpc.StatusCode.INVALID_ARGUMENT, "shape_mismatch",
            f"shapes input {shape} latent {latent} != bundle's {info.input_shape} {info.latent_shape}{whole} "
            f"for source {header.source_index}")
