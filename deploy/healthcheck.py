#!/usr/bin/env python3
"""Container healthcheck for the ndsc images: ``ndsc-healthcheck decoder|edge``.

Installed as ``ndsc-healthcheck`` in both images and used by their ``HEALTHCHECK``,
by ``compose.yaml`` and by ``tests/deploy`` (which runs it against the same
processes compose would start). It reads the same environment variables as the
service it checks, so it needs no arguments inside a container:

* ``decoder``: the gRPC health service on ``NDSC_LISTEN``'s port answers ``SERVING``
  (the decoder only reports that once its bundle is loaded) and the Prometheus
  endpoint on ``NDSC_METRICS_PORT`` serves ``ndsc_`` metrics.
* ``edge``: the Prometheus endpoint on ``NDSC_METRICS_PORT`` serves ``ndsc_`` metrics.

Exit status 0 means healthy, 1 unhealthy (the reason is printed). Only the standard
library and grpcio (present in both images) are imported, and no torch.
"""
from __future__ import annotations

import argparse
import os
import sys
import urllib.request

DEFAULT_GRPC_PORT = 50051
DEFAULT_METRICS_PORT = {"decoder": 9100, "edge": 9101}


def _port_of(address: str, default: int) -> int:
    """The port of ``HOST:PORT`` / ``[::]:PORT`` / ``PORT`` (``default`` when absent)."""
    tail = address.rsplit(":", 1)[-1] if ":" in address else address
    return int(tail) if tail.isdigit() else default


def check_metrics(port: int, host: str, timeout: float) -> str | None:
    """None when ``http://host:port/metrics`` serves ndsc metrics, else the reason."""
    url = f"http://{host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            body = reply.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"{url}: {exc}"
    if "ndsc_" not in body:
        return f"{url}: no ndsc_ metrics exported"
    return None


def check_grpc_health(port: int, host: str, timeout: float) -> str | None:
    """None when the gRPC health service reports SERVING for the server as a whole."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = f"{host}:{port}"
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                              timeout=timeout)
    except grpc.RpcError as exc:
        return f"grpc health {target}: {exc.code().name} {exc.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"grpc health {target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ndsc-healthcheck", description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=["decoder", "edge"])
    parser.add_argument("--host", default="127.0.0.1", help="where the service listens (default: loopback)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per probe")
    args = parser.parse_args(argv)

    metrics_port = _port_of(os.environ.get("NDSC_METRICS_PORT", ""), DEFAULT_METRICS_PORT[args.role])
    problems = [check_metrics(metrics_port, args.host, args.timeout)]
    if args.role == "decoder":
        grpc_port = _port_of(os.environ.get("NDSC_LISTEN", ""), DEFAULT_GRPC_PORT)
        problems.append(check_grpc_health(grpc_port, args.host, args.timeout))
    problems = [p for p in problems if p]
    for p in problems:
        print(f"unhealthy: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
