"""TLS credentials for both ends of the wire (server TLS, optional mutual TLS).

Paths are PEM files. The decoder serves TLS when given a certificate and key; given
also a client CA it requires every client to present a certificate signed by it
(mutual TLS). An edge verifies the decoder against ``ca`` and, for mutual TLS,
presents its own certificate and key. grpc only: the edge may import this.
"""

from __future__ import annotations

from pathlib import Path

import grpc


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def server_credentials(cert: str, key: str, client_ca: str | None = None) -> grpc.ServerCredentials:
    """Server TLS from PEM files; ``client_ca`` turns on required client certificates."""
    return grpc.ssl_server_credentials(
        [(_read(key), _read(cert))], root_certificates=_read(client_ca), require_client_auth=client_ca is not None
    )


def channel_credentials(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> grpc.ChannelCredentials:
    """Client TLS: trust ``ca`` (default: the system roots); ``cert``+``key`` for mutual TLS."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs its key and vice versa")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert)
    )
