"""Sizing figures for scale-out (deploy/k8s/SCALING.md): what one decoder core sustains.

Measures, on one CPU thread, with a real bundle and real coded payloads:
  * edge: ONNX analysis + rounding + ANS per window (as a multiple of real time);
  * decoder: entropy decoding of every source's payload plus joint synthesis, per
    window, at batch 1 (the baseline) and at the decoder's batch size, printed as the
    ratio batch/baseline and as windows/s per core;
  * the real rate (payload bytes × 8) per node and per group;
then the arithmetic for G sensor groups: uplink Mbit/s, windows/s, decoder cores.
With ``--e2e W`` it also runs the real path: ``ndsc decoder`` and one ``ndsc edge``
process per source on loopback, the edges sending W windows each as fast as they can
(``NDSC_FAST=1``), and divides the decoder process's CPU time (from /proc) by the
windows it reconstructed: the per-window cost of gRPC + sessions + aligner + decode.

    python benchmarks/decoder_capacity.py [--bundle DIR] [--source ecg-synth:seed=1] [--groups 10000] [--e2e 2000]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def best_of(fn, repeats: int = 5) -> float:
    """Smallest wall time of ``repeats`` calls (least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_to_end(bundle_path: Path, source: str, n: int, windows: int) -> tuple[float, float]:
    """Decoder CPU seconds per reconstructed window, and windows/s wall, over loopback."""
    import os
    import socket
    import subprocess
    import urllib.request

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def reconstructions(url: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "ndsc_reconstructions_total")

    grpc_port, metrics_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("NDSC_")}
    common = {"NDSC_BUNDLE": str(bundle_path), "NDSC_METRICS_ADDR": "127.0.0.1"}
    decoder = subprocess.Popen([sys.executable, "-m", "ndsc", "decoder"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**base, **common, "NDSC_LISTEN": f"127.0.0.1:{grpc_port}",
                                                                "NDSC_METRICS_PORT": str(metrics_port)})
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    edges = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                reconstructions(url)
                break
            except OSError:
                if time.monotonic() > deadline or decoder.poll() is not None:
                    raise RuntimeError("decoder did not start")
                time.sleep(0.2)
        cpu0, t0 = cpu_seconds(decoder.pid), time.monotonic()
        for i in range(n):
            edges.append(subprocess.Popen(
                [sys.executable, "-m", "ndsc", "edge"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**base, **common, "NDSC_DECODER": f"127.0.0.1:{grpc_port}", "NDSC_SOURCE": source,
                     "NDSC_SOURCE_INDEX": str(i), "NDSC_FAST": "1", "NDSC_MAX_WINDOWS": str(windows),
                     "NDSC_METRICS_PORT": "-1", "NDSC_AUDIT_EVERY": "0"}))
        while reconstructions(url) < windows and time.monotonic() < deadline + 600:
            time.sleep(0.2)
        done = reconstructions(url)
        return (cpu_seconds(decoder.pid) - cpu0) / done, done / (time.monotonic() - t0)
    finally:
        for p in edges + [decoder]:
            p.terminate()
            p.wait(30)


def main() -> None:
    from ndsc.bundles import DEFAULT_BUNDLE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", help=f"bundle directory (default: the shipped {DEFAULT_BUNDLE})")
    parser.add_argument("--source", default="ecg-synth:seed=1", help="source spec every node reads")
    parser.add_argument("--windows", type=int, default=64, help="windows per measurement (= decoder batch)")
    parser.add_argument("--groups", type=int, default=10_000, help="sensor groups to size for")
    parser.add_argument("--utilisation", type=float, default=0.5, help="target CPU utilisation per replica")
    parser.add_argument("--e2e", type=int, default=0, metavar="W", help="also run decoder + edges on loopback, W windows")
    args = parser.parse_args()

    import numpy as np
    import torch

    from edge_encoder.encoder import EdgeEncoder
    from fusion_decoder.runtime import JointDecoderRuntime
    from ndsc.bundle import load_bundle
    from ndsc.bundles import default_bundle
    from ndsc.sources.base import open_source

    torch.set_num_threads(1)
    path = args.bundle or default_bundle()
    if path is None:
        sys.exit("no bundle: pass --bundle DIR")
    bundle = load_bundle(path)
    n, b = bundle.n_sources, args.windows

    windows = []  # per source: b windows
    for i in range(n):
        src = open_source(args.source, i, tuple(bundle.sources[i].input_shape))
        it = src.windows()
        windows.append([next(it).data for _ in range(b)])
        period = src.window_period
    encoders = [EdgeEncoder(bundle, i) for i in range(n)]
    payloads = [[encoders[i].encode(windows[i][w]) for i in range(n)] for w in range(b)]
    encode_s = best_of(lambda: [encoders[0].encode(x) for x in windows[0]]) / b

    runtime = JointDecoderRuntime(bundle, device="cpu")
    one = best_of(lambda: [runtime.decode_batch([row]) for row in payloads]) / b
    batched = best_of(lambda: runtime.decode_batch(payloads)) / b
    entropy = best_of(lambda: [runtime.entropy_decode(i, p) for row in payloads for i, p in enumerate(row)]) / b

    bits_node = 8 * float(np.mean([len(p) for row in payloads for p in row]))
    samples_node = bundle.sources[0].samples_per_window
    group_kbps = n * bits_node / period / 1000
    per_core = 1 / batched
    windows_s = args.groups / period
    cores = windows_s / (per_core * args.utilisation)

    print(f"bundle {bundle.bundle_id[:19]}  sources {n}  window {samples_node} samples / {period:.3f} s  "
          f"torch threads 1  windows {b}")
    print(f"edge encode: {encode_s * 1e3:.2f} ms/window = {period / encode_s:.0f}x real time on one core")
    print(f"rate: {bits_node:.0f} bits/window/node = {bits_node / samples_node:.3f} bits/sample, "
          f"{group_kbps:.2f} kbit/s per group (raw 16-bit: {n * samples_node * 16 / period / 1000:.1f})")
    print(f"decode per window: entropy {entropy * 1e3:.2f} ms, batch 1 {one * 1e3:.2f} ms, "
          f"batch {b} {batched * 1e3:.2f} ms  (batching x{one / batched:.1f})")
    print(f"one core: {per_core:.0f} windows/s = {per_core * period:.0f} groups at real time")
    print(f"{args.groups} groups: {windows_s:.0f} windows/s, {args.groups * n} uplink streams, "
          f"{args.groups * group_kbps / 1000:.1f} Mbit/s payload, {math.ceil(cores)} decoder cores at "
          f"{args.utilisation:.0%} utilisation (decode only)")
    if args.e2e:
        cpu_per_window, wall_rate = end_to_end(Path(bundle.path), args.source, n, args.e2e)
        e2e_core = 1 / cpu_per_window
        print(f"end to end (gRPC + sessions + aligner + decode, {n} edge processes, NDSC_FAST=1): decoder CPU "
              f"{cpu_per_window * 1e3:.2f} ms/window = {e2e_core:.0f} windows/s per core "
              f"({e2e_core * period:.0f} groups at real time; wall {wall_rate:.0f} windows/s on this shared machine)")
        print(f"{args.groups} groups end to end: {math.ceil(windows_s / (e2e_core * args.utilisation))} decoder "
              f"cores at {args.utilisation:.0%} utilisation")


if __name__ == "__main__":
    main()
