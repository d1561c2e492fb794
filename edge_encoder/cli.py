"""``ndsc edge``: run one edge node. Imports onnxruntime/grpc only inside the handler."""

from __future__ import annotations

import argparse

EXIT_CONFIG = 2  # bad settings, bundle, quality point or source spec
EXIT_REFUSED = 3  # the decoder refused this node (bundle mismatch, bad header): retrying cannot help


def configure(subparsers) -> None:
    from edge_encoder.settings import EdgeSettings
    from ndsc.wire.settings import add_arguments, env_help

    p = subparsers.add_parser(
        "edge",
        help="stream one source's coded windows to the fusion decoder",
        description="Edge node: source → ONNX encoder → rounding → static-table ANS → gRPC uplink "
        "(reconnects with back-off and resumes from the last acknowledged frame).",
        epilog=env_help(EdgeSettings),
    )
    add_arguments(p, EdgeSettings)
    p.set_defaults(handler=run_edge)


def run_edge(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from prometheus_client import CollectorRegistry, ProcessCollector

    from ndsc.listen import start_metrics_server

    from edge_encoder.node import EdgeFatalError, EdgeNode
    from edge_encoder.settings import EdgeSettings
    from ndsc.wire.settings import from_args

    from ndsc.bundle import BundleError
    from ndsc.sources.base import SourceError

    log = logging.getLogger("ndsc.edge")
    try:
        settings = from_args(EdgeSettings, args).validate()
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_* (RSS, CPU, open fds) beside the node's metrics
        node = EdgeNode(settings, registry)
    except (ValueError, OSError, BundleError) as exc:  # OSError: an unreadable token file
        log.error("cannot start the edge node: %s", exc)
        return EXIT_CONFIG
    metrics_url = ""
    if settings.metrics_port >= 0:
        httpd = start_metrics_server(settings.metrics_port, settings.metrics_addr, registry, "--metrics-port")
        metrics_url = f"http://{settings.metrics_addr}:{httpd.server_port}/metrics"
    print(
        f"NDSC_EDGE_READY node={settings.node_name} source={settings.source_index} metrics={metrics_url} "
        f"quality={node.encoder.quality}",
        flush=True,
    )

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # main() runs as the loop's task
        signals = {"n": 0}

        def on_signal() -> None:
            # First signal: stop reading, give the buffer --drain-timeout seconds to be
            # acknowledged (also while reconnecting), then exit. Second: quit now.
            signals["n"] += 1
            node.stop() if signals["n"] == 1 else task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            windows = await node.run()
        except EdgeFatalError as exc:
            log.error("decoder refused node %s: %s", settings.node_name, exc)
            return EXIT_REFUSED
        except SourceError as exc:
            log.error("source %r cannot be opened: %s", settings.source, exc)
            return EXIT_CONFIG
        except asyncio.CancelledError:
            log.warning("node %s stopped before every frame was acknowledged", settings.node_name)
            return 1
        if node.unacknowledged:
            log.warning(
                "node %s stopped with %d frames unacknowledged (drain timeout %.1fs)",
                settings.node_name,
                node.unacknowledged,
                settings.drain_timeout,
            )
            return 1
        log.info("node %s done: %d windows read", settings.node_name, windows)
        return 0

    return asyncio.run(main())
