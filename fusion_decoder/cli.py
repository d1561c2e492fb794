"""``ndsc decoder``: run the fusion decoder service. Imports torch only inside the handler."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any, Coroutine


def configure(subparsers) -> None:
    from fusion_decoder.settings import DecoderSettings
    from ndsc.wire.settings import add_arguments, env_help

    p = subparsers.add_parser(
        "decoder", help="serve the fusion decoder (gRPC + Prometheus metrics)",
        description="Fusion decoder: per-node uplink sessions, aligner with a deadline, batched joint "
                    "decoding (CUDA when present, else CPU), Subscribe/Audit/GetModelInfo, health and "
                    "reflection. SIGINT/SIGTERM drain held windows, then stop.",
        epilog=env_help(DecoderSettings))
    add_arguments(p, DecoderSettings)
    p.set_defaults(handler=run_decoder)
    t = subparsers.add_parser(
        "tokens", help="generate per-node credentials (decoder tokens file + one secret per node)",
        description="Create DIR/decoder.tokens (sha256 digests, the decoder's --tokens-file), "
                    "DIR/edges/GROUP__NODE.token (each node's --token-file) and DIR/reader.token (Subscribe to "
                    "every group). Idempotent: existing secrets are kept, missing ones created, decoder.tokens "
                    "rewritten from the specs. E.g. ndsc tokens ./tokens patient-1:edge-0,edge-1,edge-2,edge-3")
    t.add_argument("directory", help="credentials directory (created)")
    t.add_argument("specs", nargs="+", metavar="GROUP:NODE,NODE,...", help="the nodes of one group; node k streams "
                   "source k")
    t.set_defaults(handler=run_tokens)


def run_tokens(args: argparse.Namespace) -> int:
    from fusion_decoder.tokens import ensure_tokens, parse_specs

    credentials = parse_specs(args.specs)
    created = ensure_tokens(args.directory, credentials)
    print(f"NDSC_TOKENS_READY dir={args.directory} nodes={len(credentials)} created={created}", flush=True)
    return 0


def run_decoder(args: argparse.Namespace) -> int:
    import signal

    from prometheus_client import CollectorRegistry

    from fusion_decoder.allocator import keep_freed_memory
    from fusion_decoder.server import DecoderServer
    from ndsc.listen import check_listen_address, start_metrics_server
    from fusion_decoder.settings import DecoderSettings
    from ndsc.bundle import load_bundle
    from ndsc.wire.settings import from_args

    try:
        settings = from_args(DecoderSettings, args).validate()
        bundle = load_bundle(settings.bundle)
        authorize = None
        if settings.tokens_generate:  # compose: the first start makes the credentials the edges then read
            from pathlib import Path

            from fusion_decoder.tokens import ensure_tokens, parse_specs

            created = ensure_tokens(Path(settings.tokens_file).parent, parse_specs([settings.tokens_generate]),
                                    settings.tokens_file)
            logging.getLogger("ndsc.decoder").info("credentials beside %s: %d created", settings.tokens_file, created)
        if settings.tokens_file:
            from fusion_decoder.auth import TokenBook

            authorize = TokenBook.load(settings.tokens_file)
        for path in filter(None, settings.tls or ()):
            with open(path, "rb"):
                pass
    except OSError as exc:
        logging.getLogger("ndsc.decoder").error("cannot start the decoder: %s", exc)
        return 2
    except ValueError as exc:  # includes BundleError
        logging.getLogger("ndsc.decoder").error("cannot start the decoder: %s", exc)
        return 2
    check_listen_address(settings.listen, "--listen")
    # The event loop is busy at load; the decoding thread needs the GIL back between its torch calls
    # (which release it). At CPython's 5 ms default it waited up to that long each time: at 2 400
    # frames/s of load.py, p50/p99 capture → reconstruction 127/350 ms at 5 ms, 75/217 ms at 0.5 ms.
    sys.setswitchinterval(settings.switch_interval)
    keep_freed_memory(settings.heap_keep_mib)  # before the model loads: see fusion_decoder/allocator.py
    registry = CollectorRegistry()
    log = logging.getLogger("ndsc.decoder")
    metrics_url = ""
    if settings.metrics_port >= 0:  # bound before the event loop starts: a busy port is one clear line
        httpd = start_metrics_server(settings.metrics_port, settings.metrics_addr, registry, "--metrics-port")
        metrics_url = f"http://{settings.metrics_addr}:{httpd.server_port}/metrics"

    async def main() -> int:
        server = DecoderServer(bundle, settings.listen, registry=registry,
                               device=settings.device, deadline=settings.deadline, max_batch=settings.max_batch,
                               grace=settings.grace, drain_timeout=settings.drain_timeout,
                               max_message_bytes=settings.max_message_bytes,
                               authorize=authorize, tls=settings.tls, state_dir=settings.state_dir,
                               journal_sync=settings.journal_sync, max_seq_gap=settings.max_seq_gap,
                               subscriber_queue=settings.subscriber_queue,
                               max_frame_area=settings.max_frame_area, max_chunks=settings.max_chunks,
                               max_groups=settings.max_groups, max_streams=settings.max_streams,
                               max_subscribers=settings.max_subscribers,
                               group_idle=settings.group_idle, stream_idle=settings.stream_idle,
                               keepalive=settings.keepalive, max_capture_age=settings.max_capture_age,
                               max_capture_lead=settings.max_capture_lead,
                               max_label_groups=settings.max_label_groups,
                               max_label_nodes=settings.max_label_nodes,
                               refusal_log=(settings.log_burst, settings.log_interval),
                               ack_interval=settings.ack_interval)
        try:
            port = await server.start()
        except OSError as exc:
            log.error("cannot start the decoder: gRPC %s", exc)
            return 2
        host = settings.listen.rsplit(":", 1)[0]
        print(f"NDSC_DECODER_READY grpc={host}:{port} metrics={metrics_url} device={server.runtime.device} "
              f"tls={'mutual' if settings.tls_client_ca else 'on' if settings.tls else 'off'} "
              f"auth={'tokens' if authorize else 'off'} state={settings.state_dir or '-'}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        return 0

    return run_event_loop(main(), settings.event_loop)


def run_event_loop(main: Coroutine[Any, Any, int], kind: str = "uvloop") -> int:
    """Run ``main`` on uvloop (libuv: a cheaper loop for grpc.aio's per-message callbacks, about
    10–15 % more frames/s in ``benchmarks/load.py``) or on asyncio's own loop, which is also the
    fallback where uvloop is not installed (e.g. Windows)."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            logging.getLogger("ndsc.decoder").info("uvloop is not installed: serving on asyncio's event loop")
        else:
            return uvloop.run(main)
    return asyncio.run(main)
