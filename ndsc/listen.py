"""Ports a process listens on (gRPC, Prometheus /metrics), with one clear error for a busy one."""

from __future__ import annotations

import errno
import socket
from http.server import HTTPServer

from prometheus_client import CollectorRegistry, start_http_server

from ndsc.errors import UsageError


def start_metrics_server(port: int, addr: str, registry: CollectorRegistry, flag: str) -> HTTPServer:
    """Serve ``registry`` on ``addr:port`` (0: a free port) in a daemon thread; returns the server.

    Raises:
        UsageError: the port is taken or the address cannot be bound (names ``flag``).
    """
    try:
        httpd, _ = start_http_server(port, addr, registry=registry)
    except OSError as exc:
        raise _bind_error(exc, f"{flag} {port}", f"{addr}:{port}", flag, "check the address and port") from exc
    return httpd


def _bind_error(exc: OSError, what: str, where: str, flag: str, otherwise: str) -> UsageError:
    """The one-line error for a failed bind: in use (pick another ``flag``) or not bindable."""
    if exc.errno == errno.EADDRINUSE:
        return UsageError(
            f"{what}: {where} is already in use",
            f"stop what holds it, or pick another {flag} (port 0 picks a free one)",
        )
    return UsageError(f"{what}: cannot listen on {where} ({exc.strerror or exc})", otherwise)


def check_listen_address(address: str, flag: str) -> None:
    """Fail early, in one line, when ``host:port`` is held by another listener (port 0: nothing to check).

    gRPC would otherwise log its own bind errors and, because it binds with SO_REUSEPORT,
    could even share a port with another gRPC server. SO_REUSEADDR here lets a port in
    TIME_WAIT (a restarted decoder) pass, as it does for gRPC.

    Raises:
        UsageError: the port is in use or the address is not one this host can bind.
    """
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError as exc:
        raise UsageError(f"{flag} {address}: not host:port", "give e.g. 127.0.0.1:50051") from exc
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            probe.listen(1)
    except OSError as exc:
        raise _bind_error(
            exc,
            f"{flag} {address}",
            f"port {port}",
            flag,
            "give an address of this host, e.g. 127.0.0.1:50051 or 0.0.0.0:50051",
        ) from exc
