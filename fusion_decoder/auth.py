"""Per-node credentials: bearer tokens bound to (group, node, source).

The tokens file has one credential per line, ``TOKEN GROUP NODE SOURCE``, with ``#``
comments. TOKEN is the secret itself or ``sha256:<hex>`` of it (so the decoder's copy
need not hold the secret). A node sends ``authorization: Bearer TOKEN`` on every call.

* no token, or a token not in the file → UNAUTHENTICATED;
* a known token used for another (group, node, source) → PERMISSION_DENIED, so a node
  cannot stream, or audit, another node's source;
* ``Subscribe`` needs a token of the requested group (a node's own, or a reader line
  ``TOKEN GROUP * *``); a ``*`` group reads every group.

Lookup is by sha256 of the presented token, so timing does not reveal how much of a
guess matched.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import grpc

from fusion_decoder.sessions import StreamRefused
from ndsc.wire import TOKEN_METADATA_KEY, pb

WILDCARD = "*"


@dataclass(frozen=True)
class Binding:
    """What one token may do."""

    group: str
    node: str  # "*": a reader (Subscribe only)
    source: str  # index, or "*" with a reader


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    """The configured credentials; callable as the decoder's ``authorize=`` hook."""

    def __init__(self, bindings: dict[str, Binding]):
        self._by_digest = bindings

    @classmethod
    def load(cls, path: str | Path) -> "TokenBook":
        """Parse a tokens file (see module doc). Raises ValueError on a malformed line."""
        bindings: dict[str, Binding] = {}
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 4:
                raise ValueError(f"{path}:{n}: expected 'TOKEN GROUP NODE SOURCE', got {len(parts)} fields")
            token, group, node, source = parts
            if source != WILDCARD and not source.isdigit():
                raise ValueError(f"{path}:{n}: source must be an index or '*'")
            if (node == WILDCARD) != (source == WILDCARD):
                raise ValueError(f"{path}:{n}: a reader line has '*' for both node and source")
            digest = token[7:].lower() if token.startswith("sha256:") else _digest(token)
            if digest in bindings:
                raise ValueError(f"{path}:{n}: token listed twice")
            bindings[digest] = Binding(group, node, source)
        if not bindings:
            raise ValueError(f"{path}: no tokens")
        return cls(bindings)

    def __len__(self) -> int:
        return len(self._by_digest)

    def _binding(self, metadata: Sequence[tuple[str, str]]) -> Binding:
        value = next((v for k, v in metadata if k == TOKEN_METADATA_KEY), None)
        if not value or not value.startswith("Bearer ") or not value[7:].strip():
            raise StreamRefused(grpc.StatusCode.UNAUTHENTICATED, "missing_token",
                                "no credential: send 'authorization: Bearer <token>'")
        binding = self._by_digest.get(_digest(value[7:].strip()))
        if binding is None:
            raise StreamRefused(grpc.StatusCode.UNAUTHENTICATED, "unknown_token", "credential not recognised")
        return binding

    def check_any(self, metadata: Sequence[tuple[str, str]]) -> None:
        """Refuse unless the call carries some known token (GetModelInfo)."""
        self._binding(metadata)

    def check_node(self, group: str, node: str, source: int, metadata: Sequence[tuple[str, str]]) -> None:
        """Refuse unless the call's token is bound to exactly (group, node, source)."""
        b = self._binding(metadata)
        if (b.group, b.node, b.source) != (group, node, str(source)):
            raise StreamRefused(grpc.StatusCode.PERMISSION_DENIED, "wrong_binding",
                                f"credential is not bound to group {group!r} node {node!r} source {source}")

    def check_reader(self, group: str, metadata: Sequence[tuple[str, str]]) -> None:
        """Refuse unless the token may read ``group`` ('' = every group needs a '*' token)."""
        b = self._binding(metadata)
        if b.group != WILDCARD and b.group != group:
            raise StreamRefused(grpc.StatusCode.PERMISSION_DENIED, "wrong_binding",
                                f"credential may not read group {group or '(all)'!r}")

    def __call__(self, header: pb.StreamHeader, metadata: Sequence[tuple[str, str]]) -> None:
        self.check_node(header.group or "default", header.node_id, header.source_index, metadata)
