#!/usr/bin/env python
"""Train the shipped stereo bundle ``ndsc/bundles/stereo-middlebury`` (two cameras, five quality points).

Usage::

    python scripts/build_stereo_bundle.py                        # ../shared/data/stereo/middlebury, preset stereo-small
    python scripts/build_stereo_bundle.py --separate --out runs/stereo/separate   # the separate-coding baseline
    python scripts/build_stereo_bundle.py --fusion-only --out B   # retrain only B's view fusion (codec frozen)
    python scripts/build_stereo_bundle.py --fusion-only --out B --fusion-steps 20000 --device cuda

Trains preset ``stereo-small`` on the Middlebury scenes under ``../shared/data/stereo`` (split by
scene; the held-out scenes are named in the manifest) and exports it with its five quality points.
``--separate`` trains the baseline with the same encoders, the same synthesis without cross-view
attention or side information, and β_MI = 0. Both then train a learned view fusion with the codec
frozen (``training/view_fusion.py``; the separate one without the other view: a post-filter);
``--fusion-only`` runs just that stage on an existing bundle of the same preset, from the fusion's
initialisation (the CPU codec training is deterministic, so this equals a full build whose fusion
stage changed), for ``--fusion-steps`` (default the preset's) on ``--device``
(``scripts/train_fusion_gpu.sh`` does it for the shipped bundle and the separate baseline alike). One torch thread by default (the 2-core budget: ≤ 60 min); the GPU when
one is present. The data are only read here, never copied into the repository.
``python benchmarks/stereo.py`` then measures both on whole held-out images (docs/report/stereo_bench.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data" / "stereo" / "middlebury"
DEFAULT_OUT = REPO / "ndsc" / "bundles" / "stereo-middlebury"


def build(data: Path, out: Path, separate: bool, steps: int | None, threads: int, device: str,
          fusion_only: bool = False, fusion_steps: int | None = None) -> dict:
    """Train and export one stereo bundle (``fusion_only``: retrain only the view fusion of the bundle
    at ``out``); returns where it went, its size and the training time."""
    import torch

    from training.pipeline import train_and_export
    from training.presets import get_preset, separate_baseline

    torch.set_num_threads(threads)
    cfg = get_preset("stereo-small").replace(threads=threads, device=device)
    if steps:
        cfg.steps = steps
    if fusion_steps:
        cfg.refiner_steps = fusion_steps
    if separate:
        separate_baseline(cfg)
    # Relative to the repository (../shared/data/...), so the manifest names no home folder.
    cfg.data.params = {**cfg.data.params, "root": os.path.relpath(data, REPO),
                       "edge_source": "stereo-skimage:#repeat=100000"}
    t0 = time.time()
    if fusion_only:
        from models.device import resolve_device
        from training.datasets_stereo import full_pairs
        from training.export import attach_evaluation
        from training.view_fusion import FusionConfig, train_view_fusion

        on = str(resolve_device(device, "the view fusion's training"))
        fusion = train_view_fusion(out, full_pairs(cfg.data, "train"),
                                   FusionConfig(hidden=cfg.model.refiner_hidden, blocks=cfg.model.refiner_blocks,
                                                coarse_blocks=cfg.model.refiner_coarse_blocks, steps=cfg.refiner_steps,
                                                seed=cfg.seed, device=on), restart=True)
        attach_evaluation(out, {})  # the manifest rewritten once more: the bundle's final id
        path, report = out, {"train_seconds": fusion["coding_seconds"] + fusion["train_seconds"], "train_device": on}
    else:
        path, report = train_and_export(cfg, out)
    size = sum(f.stat().st_size for f in path.iterdir())
    return {"path": str(path), "bytes": size, "train_seconds": round(report["train_seconds"], 1),
            "train_device": report["train_device"], "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of Middlebury stereo pairs")
    ap.add_argument("--out", type=Path, help=f"bundle directory (default {DEFAULT_OUT.relative_to(REPO)}; "
                                             "runs/stereo/separate with --separate)")
    ap.add_argument("--separate", action="store_true", help="the separate-coding baseline (no fusion, β_MI = 0)")
    ap.add_argument("--steps", type=int, help="override the preset's steps")
    ap.add_argument("--fusion-only", action="store_true",
                    help="retrain only the learned view fusion of the bundle at --out (its codec stays)")
    ap.add_argument("--fusion-steps", type=int, help="override the preset's steps of the view fusion "
                                                     "(refiner_steps, 2500)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    args = ap.parse_args(argv)
    out = args.out or (REPO / "runs" / "stereo" / "separate" if args.separate else DEFAULT_OUT)
    print(build(args.data, out, args.separate, args.steps, args.threads, args.device, args.fusion_only,
                args.fusion_steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
