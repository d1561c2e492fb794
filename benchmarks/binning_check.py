"""What the plane check costs and buys: wrong decodes and sum rate with no check, CRC-16 and CRC-32.

Trains the main trainer's short-block binning codecs (gaussian-quick, 150 steps, source 1
syndrome-coded given source 0: the configurations where belief propagation often stops at a
wrong word) and codes each one's test windows offline (``training.binning.measure_offline``: the
bits the live stream sends, to the bit) three times, with the bundle's ``check_bits`` set to 0
(as bundles before the check), 16 and 32. Printed per configuration and check: test windows
decoded to other symbols than the edge's, BP words the check refused, sum rate, requests per
window, fallbacks.

    python benchmarks/binning_check.py [--json OUT]     # ≈ 3 min on one core
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (samples per window = the LDPC block, windows generated (10 % test), min_initial_bits)
CONFIGS = ((256, 200, 1), (256, 200, 32), (256, 100, 1), (256, 100, 32), (512, 100, 32), (1024, 100, 32))


def measure(samples: int, n_windows: int, min_bits: int, out: Path) -> list[dict]:
    """Train one configuration; its test windows coded with each check."""
    from ndsc.binning import CHECK_BITS
    from ndsc.bundle import load_bundle
    from training.binning import measure_offline
    from training.evaluate import dataset_for_bundle
    from training.pipeline import train_and_export
    from training.presets import get_preset

    cfg = get_preset("gaussian-quick").replace(
        steps=150, progress=False, threads=1, binning={"syndrome": [[1, 0]], "min_initial_bits": min_bits},
        data={"n_windows": n_windows, "params": {"n": 2, "rho": 0.9, "samples": samples}})
    bundle = load_bundle(train_and_export(cfg, out)[0])
    windows = dataset_for_bundle(bundle).test
    rows = []
    for check in CHECK_BITS:
        info = bundle.sources[1]
        variant = dataclasses.replace(bundle, sources=[bundle.sources[0], dataclasses.replace(
            info, binning=dataclasses.replace(info.binning, check_bits=check))])
        m = measure_offline(variant, windows)
        rows.append({"samples": samples, "windows": n_windows, "test_windows": len(windows),
                     "min_initial_bits": min_bits, "check_bits": check, "wrong_windows": m["wrong_windows"],
                     "check_failures": m["check_failures"], "sum_rate_bits_per_sample": m["sum_rate_bits_per_pair"],
                     "requests_per_window": m["requests_per_window"],
                     "fallbacks": sum(sum(r["fallback"]) for r in m["windows"]),
                     "syndrome_planes": sum(p.mode == "syndrome" for p in info.binning.planes)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'n':>5} {'windows':>7} {'floor':>5} {'check':>5} {'wrong':>9} {'caught':>6} {'bits/sample':>11} "
          f"{'req/win':>7} {'fallbk':>6}")
    with tempfile.TemporaryDirectory(prefix="ndsc-binning-check-") as tmp:
        for k, (samples, n_windows, min_bits) in enumerate(CONFIGS):
            for r in measure(samples, n_windows, min_bits, Path(tmp) / str(k)):
                rows.append(r)
                print(f"{samples:5d} {n_windows:7d} {min_bits:5d} {r['check_bits']:5d} "
                      f"{r['wrong_windows']:4d} of {r['test_windows']:2d} {r['check_failures']:6d} "
                      f"{r['sum_rate_bits_per_sample']:11.4f} {r['requests_per_window']:7.2f} {r['fallbacks']:6d}",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
