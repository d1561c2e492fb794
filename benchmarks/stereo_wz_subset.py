"""Quick Wyner–Ziv check on a few held-out scenes: each bundle's right view at every point beside a left
view at the top point (rate and PSNR of the right view, PSNR of the left), whole images, real bytes.

The full comparison is ``benchmarks/stereo.py``; this is its ``5/q`` curve alone, for trying variants::

    python benchmarks/stereo_wz_subset.py --scenes cones,Pipes ndsc/bundles/stereo-middlebury runs/stereo/separate
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--scenes", default="cones,Pipes", help="held-out scenes (validation or test split)")
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "stereo" / "middlebury"))
    args = ap.parse_args(argv)
    import torch

    from ndsc.bundle import load_bundle
    from training.datasets_stereo import full_pairs
    from training.presets import get_preset
    from training.stereo_eval import evaluate_pairs

    torch.set_num_threads(1)
    cfg = get_preset("stereo-small")
    cfg.data.params["root"] = args.root
    wanted = args.scenes.split(",")
    pairs = [p for split in ("val", "test") for p in full_pairs(cfg.data, split) if p[0] in wanted]
    for bundle in args.bundles:
        start, names = time.time(), load_bundle(bundle).quality_names
        rows = []
        for q in names:
            r = evaluate_pairs(bundle, pairs, quality=(names[-1], q))
            left, right = r["per_view"]
            rows.append(f"{names[-1]}/{q}: right {right['bpd']:.4f} bit/dim {right['psnr_db']:.2f} dB, "
                        f"left {left['psnr_db']:.2f} dB")
        print(f"{bundle} ({time.time() - start:.0f} s): " + "; ".join(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
