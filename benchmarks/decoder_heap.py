#!/usr/bin/env python
"""Joint-decoder batch time on CPU with glibc malloc's defaults against the decoder's kept heap.

Why it exists: the decoder keeps freed memory in its heap (``NDSC_HEAP_KEEP_MIB``,
``fusion_decoder/allocator.py``) because glibc otherwise maps a large batch's activations afresh
and unmaps them on every call, so each batch faults them in again. malloc's settings are per
process and glibc's default (a threshold that adapts) cannot be restored once changed, so each
measurement is a child process of its own: the two settings alternate, ``--repeats`` rounds, and
the best median per batch size is reported with the ratio default/kept and each child's peak
RSS (the memory the kept heap costs).

Usage::

    python benchmarks/decoder_heap.py [--bundle ecg-synth-quick] [--batches 1,4,16,32,64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusion_decoder.settings import DecoderSettings  # noqa: E402

KEPT_MIB = DecoderSettings().heap_keep_mib  # the decoder's default NDSC_HEAP_KEEP_MIB


def child(bundle: str, batches: list[int], calls: int, kept: bool) -> dict:
    """Median ms of ``runtime.synthesise`` per batch size in this process, and its peak RSS."""
    from fusion_decoder.allocator import keep_freed_memory

    took = keep_freed_memory(KEPT_MIB) if kept else False  # before torch allocates anything
    import numpy as np
    import torch

    from fusion_decoder.runtime import JointDecoderRuntime
    from ndsc.bundle import load_bundle
    from ndsc.bundles import default_bundle

    torch.set_num_threads(1)  # as the decoder runs in the benchmarks (OMP_NUM_THREADS=1)
    path = Path(bundle) if Path(bundle).is_dir() else default_bundle(bundle)
    runtime = JointDecoderRuntime(load_bundle(path), device="cpu")
    runtime.warm_up()
    n, shape = runtime.n_sources, runtime.latent_shape(0)
    rng = np.random.default_rng(0)
    ms = {}
    for b in batches:
        symbols = rng.normal(size=(b, n, *shape)).astype(np.float32)
        present = np.ones((b, n), np.float32)
        runtime.synthesise(symbols, present)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            runtime.synthesise(symbols, present)
            times.append(time.perf_counter() - start)
        ms[b] = float(np.median(times)) * 1e3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: the process's VmHWM
    return {"kept": took, "ms": ms, "peak_rss_mib": round(peak, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="ecg-synth-quick", help="shipped bundle name or path (1-D windows)")
    ap.add_argument("--batches", default="1,4,16,32,64")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of one child process per setting")
    ap.add_argument("--calls", type=int, default=25, help="timed calls per batch size in each child")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--child", choices=("default", "kept"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        print(json.dumps(child(args.bundle, batches, args.calls, args.child == "kept")))
        return 0
    runs: dict[str, list[dict]] = {"default": [], "kept": []}
    for r in range(args.repeats):
        for mode in (("default", "kept") if r % 2 == 0 else ("kept", "default")):  # order alternates
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--bundle", args.bundle,
                                  "--batches", args.batches, "--calls", str(args.calls)],
                                 check=True, capture_output=True, text=True, cwd=REPO)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    if not all(run["kept"] for run in runs["kept"]):
        print("glibc refused the settings (not glibc?): both columns ran malloc's defaults")
    best = {mode: {b: min(run["ms"][str(b)] for run in rs) for b in batches} for mode, rs in runs.items()}
    report = {
        "bundle": args.bundle, "repeats": args.repeats, "kept_mib": KEPT_MIB,
        "heap_kept": all(run["kept"] for run in runs["kept"]),
        "ms_per_batch": best,
        "default_over_kept": {b: round(best["default"][b] / best["kept"][b], 2) for b in batches},
        "peak_rss_mib": {mode: max(run["peak_rss_mib"] for run in rs) for mode, rs in runs.items()},
    }
    print(f"{args.bundle}: ms per batch (best of {args.repeats} child processes each, the median of "
          f"{args.calls} calls in each)")
    print("  batch   default     kept   default/kept")
    for b in batches:
        print(f"  {b:5d} {best['default'][b]:9.2f} {best['kept'][b]:8.2f} {report['default_over_kept'][b]:14.2f}")
    print(f"  peak RSS MiB: default {report['peak_rss_mib']['default']}, kept {report['peak_rss_mib']['kept']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
