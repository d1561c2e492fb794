#!/usr/bin/env python
"""Joint-decoder cost per window against batch size on CPU: oneDNN against torch's native convolutions.

Why it exists: the decoder's joint synthesis runs in batches of whatever windows are ready, which at
light load is a few. Eager oneDNN reorders each convolution's weights on every call, a fixed cost
that dominates small batches; the runtime therefore runs small 1-D batches on torch's native
convolutions (``CPU_NATIVE_CONV_MAX_WINDOWS`` in ``fusion_decoder/runtime.py``). This prints, per shipped window
bundle and batch size, µs per window for both paths, measured alternately in the same run (best of
``--repeats``, so other jobs on the machine weigh on both alike), the ratio, and the path the runtime
picks (``JointDecoderRuntime.synthesise``).

Usage::

    python benchmarks/synthesis_batch.py [--bundle ecg-synth-quick --bundle ecg-12lead] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusion_decoder.runtime import JointDecoderRuntime, _native_convolutions  # noqa: E402
from ndsc.bundle import load_bundle  # noqa: E402
from ndsc.bundles import default_bundle  # noqa: E402


def _seconds(call, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def measure(runtime: JointDecoderRuntime, batch: int, repeats: int) -> dict:
    """Best-of-``repeats`` µs per window of one batch for oneDNN, native and the runtime's policy."""
    n, shape = runtime.n_sources, runtime.latent_shape(0)
    rng = np.random.default_rng(batch)
    latents = torch.from_numpy(rng.normal(size=(batch, n, *shape)).astype(np.float32))
    present = torch.ones(batch, n)

    @torch.inference_mode()
    def onednn():
        runtime.model(latents, present)

    @torch.inference_mode()
    def native():
        with _native_convolutions():
            runtime.model(latents, present)

    @torch.inference_mode()
    def policy():  # the path JointDecoderRuntime.synthesise picks for this batch
        with runtime._convolutions_for(latents):
            runtime.model(latents, present)

    calls = max(2, 32 // batch)
    best = {"onednn": np.inf, "native": np.inf, "policy": np.inf}
    for fn in (onednn, native, policy):  # warm: oneDNN builds its primitives on first use
        fn()
    for _ in range(repeats):  # interleaved, so a busy moment costs every path
        for name, fn in (("onednn", onednn), ("native", native), ("policy", policy)):
            best[name] = min(best[name], _seconds(fn, calls))
    us = {k: round(v / batch * 1e6, 1) for k, v in best.items()}
    return {"batch": batch, "us_per_window": us, "native_over_onednn": round(best["native"] / best["onednn"], 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--bundle",
        action="append",
        help="shipped bundle name or path (repeatable; default: ecg-synth-quick and ecg-12lead)",
    )
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # as the decoder runs with OMP_NUM_THREADS=1 in the benchmarks
    report = {}
    for name in args.bundle or ["ecg-synth-quick", "ecg-12lead"]:
        path = Path(name) if Path(name).is_dir() else default_bundle(name)
        runtime = JointDecoderRuntime(load_bundle(path), device="cpu")
        rows = [measure(runtime, int(b), args.repeats) for b in args.batches.split(",")]
        report[name] = rows
        print(f"{name}: µs per window (best of {args.repeats})")
        print("  batch   oneDNN   native   native/oneDNN   runtime's pick")
        for r in rows:
            us = r["us_per_window"]
            print(
                f"  {r['batch']:5d} {us['onednn']:8.0f} {us['native']:8.0f} {r['native_over_onednn']:15.2f}"
                f" {us['policy']:16.0f}"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
