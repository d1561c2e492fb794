#!/usr/bin/env python
"""Joint synthesis on CPU beside a busy Python thread: eager torch against the traced graph.

Why it exists: in the decoder, joint synthesis runs on the decoding thread while the event loop
runs Python on another. Eager torch gives up the GIL around each of the decoder's ops and must
take it back after each; while the other thread holds it, each retake waits up to the switch
interval (``NDSC_SWITCH_INTERVAL``), so one forward pays its op count in GIL waits. The runtime
therefore runs 1-D window bundles as a traced TorchScript graph (``JointDecoderRuntime.graph``),
which runs all its ops in one GIL release. This prints, per shipped window bundle and batch size,
ms per ``synthesise`` call for both, alone and beside a thread that runs Python without pause (the
event loop's part at load), measured alternately in the same run (median of ``--repeats``), and
the ratios eager/graph.

Usage::

    python benchmarks/synthesis_gil.py [--bundle ecg-synth-quick --bundle ecg-12lead] [--batches 4,16,40]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusion_decoder.runtime import JointDecoderRuntime  # noqa: E402
from fusion_decoder.settings import DecoderSettings  # noqa: E402
from ndsc.bundle import load_bundle  # noqa: E402
from ndsc.bundles import default_bundle  # noqa: E402


class BusyPython:
    """A thread that runs pure Python until stopped: it holds the GIL whenever it can."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="busy-python", daemon=True)

    def _spin(self) -> None:
        x = 0
        while not self._stop.is_set():
            for i in range(1000):
                x += i

    def __enter__(self) -> "BusyPython":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _median_ms(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def measure(runtime: JointDecoderRuntime, batch: int, repeats: int) -> dict:
    """Median ms of one ``synthesise`` call of ``batch`` windows, eager and traced, alone and busy."""
    n, shape = runtime.n_sources, runtime.latent_shape(0)
    rng = np.random.default_rng(batch)
    latents = rng.normal(size=(batch, n, *shape)).astype(np.float32)
    present = np.ones((batch, n), np.float32)
    graph = runtime.graph

    def run(traced: bool) -> Callable[[], object]:
        def call() -> object:
            runtime.graph = graph if traced else None
            try:
                return runtime.synthesise(latents, present)
            finally:
                runtime.graph = graph
        return call

    eager, traced = run(False), run(True)
    eager(), traced()  # warm: first calls build oneDNN primitives and profile the graph
    ms: dict[str, float] = {}
    for busy in (False, True):
        with BusyPython() if busy else contextlib.nullcontext():
            for _ in range(2):  # interleaved halves, so a busy moment of the machine costs both alike
                for name, fn in (("eager", eager), ("graph", traced)):
                    key = f"{name}{'_busy' if busy else ''}"
                    ms[key] = min(ms.get(key, np.inf), _median_ms(fn, max(1, repeats // 2)))
    return {"batch": batch, "ms": {k: round(v, 2) for k, v in ms.items()},
            "eager_over_graph": round(ms["eager"] / ms["graph"], 2),
            "eager_over_graph_busy": round(ms["eager_busy"] / ms["graph_busy"], 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", action="append",
                    help="shipped bundle name or path (repeatable; default: ecg-synth-quick and ecg-12lead)")
    ap.add_argument("--batches", default="4,16,40")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # as the decoder runs with OMP_NUM_THREADS=1 in the benchmarks
    switch = sys.getswitchinterval()
    sys.setswitchinterval(DecoderSettings().switch_interval)  # the decoder's (cli.py sets it)
    report: dict = {"switch_interval_s": sys.getswitchinterval()}
    try:
        for name in args.bundle or ["ecg-synth-quick", "ecg-12lead"]:
            path = Path(name) if Path(name).is_dir() else default_bundle(name)
            runtime = JointDecoderRuntime(load_bundle(path), device="cpu")
            if runtime.graph is None:
                print(f"{name}: runs eager (no traced graph), skipped")
                continue
            rows = [measure(runtime, int(b), args.repeats) for b in args.batches.split(",")]
            report[name] = rows
            print(f"{name}: ms per synthesise call (median of {args.repeats}), switch interval "
                  f"{report['switch_interval_s'] * 1e3:g} ms")
            print("  batch    eager    graph  eager/graph   eager busy   graph busy  eager/graph busy")
            for r in rows:
                m = r["ms"]
                print(f"  {r['batch']:5d} {m['eager']:8.2f} {m['graph']:8.2f} {r['eager_over_graph']:12.2f}"
                      f" {m['eager_busy']:12.2f} {m['graph_busy']:12.2f} {r['eager_over_graph_busy']:17.2f}")
    finally:
        sys.setswitchinterval(switch)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
