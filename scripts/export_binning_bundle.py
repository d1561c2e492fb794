#!/usr/bin/env python
"""Export a servable binning bundle (two Gaussian sources, source 1 syndrome-coded) and measure it offline.

Usage::

    python scripts/export_binning_bundle.py OUT [--method neural-sw|sq-syndrome] [--lmbda 0.14] [--step 0.5]
        [--samples 1024] [--steps 600] [--restarts 4] [--check-bits 16]

Prints the offline measurement of the bundle on its test windows (the figures a live stream
must reproduce, bit for bit; ``benchmarks/binning.py`` compares them).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from ndsc.binning import CHECK_BITS, DEFAULT_CHECK_BITS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--method", default="neural-sw", choices=["neural-sw", "sq-syndrome"])
    ap.add_argument("--lmbda", type=float, default=0.14, help="neural-sw: rate weight (0.14: D ≈ 0.1)")
    ap.add_argument("--step", type=float, default=0.5, help="sq-syndrome: quantiser step")
    ap.add_argument("--steps", type=int, default=600, help="neural-sw: training steps")
    ap.add_argument("--samples", type=int, default=1024, help="samples per window (= LDPC block length)")
    ap.add_argument("--windows", type=int, default=60, help="windows generated (80/10/10 split)")
    ap.add_argument("--initial-factor", type=float, default=1.0)
    ap.add_argument("--step-bits", type=int, default=32)
    ap.add_argument("--max-requests", type=int, default=16)
    ap.add_argument("--check-bits", type=int, default=DEFAULT_CHECK_BITS, choices=CHECK_BITS,
                    help="CRC bits per syndrome plane (0: none; docs/bitstream.md §7)")
    ap.add_argument("--restarts", type=int, default=1, help="neural-sw: training seeds tried; the one furthest below "
                    "the no-binning bound on the validation windows is kept (training lands at different points)")
    args = ap.parse_args(argv)

    import numpy as np

    from ndsc.bundle import load_bundle
    from training.binning import export_best_of, export_binning_bundle, measure_offline
    from training.data import build_dataset
    from models.config import DataConfig

    params = ({"lmbda": args.lmbda, "steps": args.steps, "batch": 4096} if args.method == "neural-sw"
              else {"step": args.step})
    common = dict(method=args.method, samples=args.samples, n_windows=args.windows,
                  initial_factor=args.initial_factor, step_bits=args.step_bits, max_requests=args.max_requests,
                  check_bits=args.check_bits, **params)
    restarts: list[dict] = []
    if args.restarts > 1:
        path, restarts = export_best_of(args.out, args.restarts, **common)
    else:
        path = export_binning_bundle(args.out, **common)
    bundle = load_bundle(path)
    cfg = bundle.training_config
    data = build_dataset(DataConfig(kind="gaussian", n_windows=cfg["n_windows"],
                                    params={"n": 2, "rho": cfg["rho"], "samples": cfg["samples"], "seed": cfg["seed"]}))
    m = measure_offline(bundle, data.test)
    m.pop("x_hat")
    print(json.dumps({"bundle": str(path), "bundle_id": bundle.bundle_id,
                      **{k: v for k, v in m.items() if k != "windows"},
                      "requests": [r["requests"][1] for r in m["windows"]], "training_seeds": restarts},
                     indent=1, default=float))
    return 0 if np.isfinite(m["sum_rate_bits_per_pair"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
