#!/usr/bin/env python
"""Serving benchmark: N edge processes → one decoder process on loopback.

For each uplink mode, measured in the same run:

* ``per-window``: one window per message (``--max-batch-frames 1``), the baseline;
* ``batched``: up to 64 windows per message, flushed every ``--flush-interval`` s.

and two paces: ``fast`` (nodes send as fast as they encode: throughput) and ``paced``
(the source at ``--paced-rate`` windows/s per node: latency as a live sensor sees it).
Reported: reconstructed frames/s (all nodes), capture→reconstruction latency p50/p99
(per frame, from the Subscribe stream's capture and reconstruction times), and wire
overhead = protocol bytes / payload bytes from the decoder's own counters (protobuf
fields + 5-byte gRPC prefix per message; HTTP/2 frame headers not included).

Usage::

    python benchmarks/serving.py --nodes 4 --windows 400
    python benchmarks/serving.py --device cuda       # decoder on the GPU when there is one
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ndsc.bundle import load_bundle  # noqa: E402
from ndsc.bundles import DEFAULT_BUNDLE, default_bundle  # noqa: E402
from app.demo import EDGE_START_MARGIN, endless_replay, scrape  # noqa: E402


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ndsc", "--log-level", "WARNING", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)


def _ready(proc: subprocess.Popen, prefix: str) -> dict[str, str]:
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited before {prefix}")
        if line.startswith(prefix):
            return dict(p.split("=", 1) for p in line.split()[1:])


def _source_spec(bundle, windows: int, rate: float | None) -> str:
    spec = endless_replay(bundle) + f",count={windows}"
    if rate is not None and spec.startswith("ecg-synth:"):
        spec += f",fs={rate * bundle.sources[0].input_shape[-1]}"  # last fs= wins: windows/s = fs / T
    elif rate is not None and spec.startswith("gaussian:"):
        spec += f",rate={rate * bundle.sources[0].input_shape[-1]}"
    return spec


def run_once(bundle_path: Path, nodes: int, windows: int, batched: bool, rate: float | None, device: str | None,
             flush_interval: float) -> dict:
    import grpc

    from ndsc.wire import pb, pb_grpc

    bundle = load_bundle(bundle_path)
    args = ["decoder", "--bundle", str(bundle_path), "--listen", "127.0.0.1:0", "--metrics-port", "0",
            "--deadline", "10"]
    decoder = _spawn(args + (["--device", device] if device else []))
    try:
        ready = _ready(decoder, "NDSC_DECODER_READY")
        channel = grpc.insecure_channel(ready["grpc"])
        stream = pb_grpc.FusionDecoderStub(channel).Subscribe(pb.SubscribeRequest())
        items: list = []
        reader = threading.Thread(target=lambda: items.extend(stream), daemon=True)
        reader.start()
        while not scrape(ready["metrics"]).get(("ndsc_subscribers", ())):
            time.sleep(0.02)
        spec = _source_spec(bundle, windows, rate)
        mode = (["--max-batch-frames", "64", "--flush-interval", str(flush_interval)] if batched
                else ["--max-batch-frames", "1"])
        # paced: one shared epoch (as `ndsc demo` does), so every node captures window k at the same instant
        pace = ["--start-at", f"{time.time() + EDGE_START_MARGIN:.6f}"] if rate else ["--fast"]
        edges = [_spawn(["edge", "--bundle", str(bundle_path), "--source-index", str(i), "--source", spec,
                         "--decoder", ready["grpc"], "--metrics-port", "-1", "--audit-every", "0", *mode, *pace])
                 for i in range(nodes)]
        for e in edges:
            _ready(e, "NDSC_EDGE_READY")
        rcs = [e.wait() for e in edges]
        metrics = scrape(ready["metrics"])
        decoder.send_signal(signal.SIGTERM)
        decoder.wait(timeout=60)
        reader.join(timeout=10)
        channel.close()
    finally:
        if decoder.poll() is None:
            decoder.kill()
    if any(rcs):
        raise RuntimeError(f"edge exit codes {rcs}")
    latencies = np.array([r.reconstructed_time - c for r in items for c, p in zip(r.capture_time, r.present) if p])
    # from the window's last-captured frame: the pipeline alone, without waiting for nodes that started later
    last_frame = np.array([r.reconstructed_time - max(c for c, p in zip(r.capture_time, r.present) if p)
                           for r in items])
    first_capture = min(c for r in items for c, p in zip(r.capture_time, r.present) if p)
    span = max(r.reconstructed_time for r in items) - first_capture

    def total(name):
        return sum(v for (n, _), v in metrics.items() if n == name)

    payload, protocol = total("ndsc_uplink_payload_bytes_total"), total("ndsc_uplink_protocol_bytes_total")
    return {
        "mode": "batched" if batched else "per-window", "pace": f"{rate:g}/s/node" if rate else "fast",
        "windows": len(items), "complete": sum(all(r.present) for r in items),
        "frames_per_s": round(len(latencies) / span, 1),
        "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
        "payload_bytes": int(payload), "protocol_bytes": int(protocol),
        "last_frame_p50_ms": round(1000 * float(np.percentile(last_frame, 50)), 2),
        "last_frame_p99_ms": round(1000 * float(np.percentile(last_frame, 99)), 2),
        "overhead_pct": round(100 * protocol / payload, 1),
        "messages": int(total("ndsc_uplink_messages_total")),
        "decoder_device": ready.get("device"),
        "mean_decode_batch": round(total("ndsc_decode_batch_size_sum") / max(total("ndsc_decode_batch_size_count"), 1),
                                   1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help=f"bundle (default: the shipped {DEFAULT_BUNDLE})")
    parser.add_argument("--nodes", type=int, help="edge processes (default: all sources)")
    parser.add_argument("--windows", type=int, default=400, help="windows per node in fast runs")
    parser.add_argument("--paced-rate", type=float, default=50.0, help="windows/s per node in paced runs")
    parser.add_argument("--paced-seconds", type=float, default=6.0)
    parser.add_argument("--flush-interval", type=float, default=0.05, help="batched mode's flush interval, s")
    parser.add_argument("--device", help="decoder torch device (default: cuda if present, else cpu)")
    args = parser.parse_args(argv)
    bundle_path = Path(args.bundle) if args.bundle else default_bundle()
    nodes = args.nodes or load_bundle(bundle_path).n_sources
    rows = []
    for rate, windows in ((None, args.windows), (args.paced_rate, int(args.paced_rate * args.paced_seconds))):
        for batched in (False, True):
            rows.append(run_once(bundle_path, nodes, windows, batched, rate, args.device, args.flush_interval))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{nodes} nodes, bundle {bundle_path.name}, command: python benchmarks/serving.py "
          + " ".join(sys.argv[1:]))
    print("latency: capture→reconstruction per frame (what ndsc_capture_to_reconstruction_seconds observes) "
          "and from each window's last-captured frame (pipeline only, no wait for later-started nodes)")
    print(f"{'pace':<12}{'mode':<12}{'frames/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'last p50':>10}{'last p99':>10}"
          f"{'overhead %':>12}{'msgs':>7}")
    for r in rows:
        print(f"{r['pace']:<12}{r['mode']:<12}{r['frames_per_s']:>10}{r['latency_p50_ms']:>9}{r['latency_p99_ms']:>9}"
              f"{r['last_frame_p50_ms']:>10}{r['last_frame_p99_ms']:>10}{r['overhead_pct']:>12}{r['messages']:>7}")
    for pace in ("fast", f"{args.paced_rate:g}/s/node"):
        base, batch = [r for r in rows if r["pace"] == pace]
        print(f"{pace}: batched/per-window frames/s ×{batch['frames_per_s'] / base['frames_per_s']:.2f}, "
              f"overhead {base['overhead_pct']}% → {batch['overhead_pct']}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
