"""Stereo benchmark: distributed codec vs separate coding vs JPEG vs WebP on held-out scenes.

Rate is what each coder wrote (payload bytes × 8; JPEG/WebP file bytes), pooled over
both views of every held-out scene at full size: bpp = bits / pixels, BPD = bits /
(pixels · 3). Quality: PSNR of the pooled MSE (8-bit reconstructions) and mean MS-SSIM.
Speed: encode seconds per megapixel on one CPU core (ONNX Runtime with one thread +
rounding + ANS), with Pillow's JPEG/WebP encode time measured in the same run as the
baseline ratio. BD-rates are given over PSNR 30–38 dB (the study's target window, clipped
to the range both curves cover) and over the whole common PSNR range.

    python benchmarks/stereo.py --root ../shared/data/stereo/middlebury --bundles runs/stereo-bench \\
        [--train --lambdas 1500,300 --steps 600]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def train_missing(root: str, bundles: Path, lambdas: list[float], steps: int) -> None:
    from training.pipeline import train_and_export
    from training.presets import get_preset

    for kind in ("joint", "separate"):
        for lam in lambdas:
            out = bundles / f"{kind}-lam{int(lam)}"
            if (out / "manifest.json").is_file():
                continue
            cfg = get_preset("stereo-small").replace(lmbda=lam, steps=steps, threads=1, progress=False)
            cfg.data.params["root"] = root
            cfg.model.joint_decoder = kind == "joint"
            train_and_export(cfg, out)


def bd(anchor: list[dict], test: list[dict]) -> str:
    """BD-rate over the target PSNR window 30–38 dB and over the whole common range."""
    from training.study.bdrate import bd_rate

    out = []
    for label, lo, hi in (("30–38 dB", 30.0, 38.0), ("common range", None, None)):
        value = bd_rate([p["bpp"] for p in anchor], [p["psnr_db"] for p in anchor],
                        [p["bpp"] for p in test], [p["psnr_db"] for p in test], method="pchip", lo=lo, hi=hi)
        out.append(f"{label}: n/a (the curves do not overlap in PSNR)" if math.isnan(value)
                   else f"{label}: {value:+.1f} %")
    return "; ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "stereo" / "middlebury"))
    ap.add_argument("--bundles", default=str(REPO / "runs" / "stereo-bench"), help="folder of stereo bundles")
    ap.add_argument("--train", action="store_true", help="train missing joint/separate bundles first")
    ap.add_argument("--lambdas", default="1500,300")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--out", help="results.json and side-by-side PNGs (default: BUNDLES/report)")
    ap.add_argument("--qualities", default="1,3,5,10,20,30,40,50,60,70,80,90")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)  # one core for everything measured here
    from ndsc.bundle import load_bundle
    from training.baselines_image import sweep
    from models.config import TrainConfig
    from training.datasets_stereo import full_pairs
    from training.stereo_eval import evaluate_pairs

    bundles_dir = Path(args.bundles)
    if args.train:
        train_missing(args.root, bundles_dir, [float(v) for v in args.lambdas.split(",")], args.steps)
    paths = sorted(p.parent for p in bundles_dir.glob("*/manifest.json"))
    bundles = [load_bundle(p) for p in paths]
    bundles = [b for b in bundles if b.modality == "stereo"]
    if not bundles:
        raise SystemExit(f"no stereo bundle in {bundles_dir} (use --train)")
    splits = {tuple(b.extra["data_info"]["test_scenes"]) for b in bundles}
    if len(splits) != 1:
        raise SystemExit(f"bundles were trained on different splits: {splits}")
    cfg = TrainConfig.from_dict(bundles[0].training_config)
    cfg.data.params["root"] = args.root
    pairs = full_pairs(cfg.data, "test")
    out = Path(args.out or bundles_dir / "report")
    out.mkdir(parents=True, exist_ok=True)
    views = [v for _, pair in pairs for v in pair]
    megapixels = sum(v.shape[-2] * v.shape[-1] for v in views) / 1e6

    # One curve per decoder kind and training length: points trained for different step
    # counts are not on one rate–distortion curve.
    curves: dict[str, list[dict]] = {}
    for b in bundles:
        tc = TrainConfig.from_dict(b.training_config)
        kind = "distributed (joint decoder)" if tc.model.joint_decoder else "separate neural"
        r = evaluate_pairs(b.path, pairs, out_dir=out / b.path.name)
        curves.setdefault(f"{kind}, {tc.steps} steps", []).append(
            {**r["total"], "label": b.path.name, "lmbda": tc.lmbda, "steps": tc.steps})
    for codec in ("jpeg", "webp"):
        pts = sweep(views, codec, tuple(int(q) for q in args.qualities.split(",")))
        for p in pts:
            p["encode_s_per_mpix"] = p.pop("encode_seconds") / megapixels
            p["label"] = f"{codec} q{p['quality']}"
        curves[codec.upper()] = pts
    for pts in curves.values():
        pts.sort(key=lambda p: p["bpp"])

    scenes = ", ".join(f"{s} {p.shape[-1]}×{p.shape[-2]}" for s, p in pairs)
    print(f"held-out scenes: {scenes} ({len(views)} views, {megapixels:.2f} Mpix); rate from bytes written")
    print("| codec | point | bpp | BPD | PSNR dB | MS-SSIM | encode s/Mpix (1 core) |")
    print("|---|---|---|---|---|---|---|")
    for name, pts in curves.items():
        for p in pts:
            print(f"| {name} | {p['label']} | {p['bpp']:.4f} | {p['bpd']:.4f} | {p['psnr_db']:.2f} | "
                  f"{p['ms_ssim']:.4f} | {p['encode_s_per_mpix']:.3f} |")
    bds = {}
    for steps in sorted({p["steps"] for name, pts in curves.items() if "steps" in name for p in pts}):
        joint = curves.get(f"distributed (joint decoder), {steps} steps", [])
        separate = curves.get(f"separate neural, {steps} steps", [])
        for anchor_name, anchor in (("WebP", curves["WEBP"]), ("JPEG", curves["JPEG"]), ("separate neural", separate)):
            if joint and anchor:
                bds[f"distributed vs {anchor_name} ({steps} steps)"] = bd(anchor, joint)
        if separate:
            bds[f"separate neural vs WebP ({steps} steps)"] = bd(curves["WEBP"], separate)
    print("BD-rate (negative = fewer bits for the same PSNR):")
    for k, v in bds.items():
        print(f"  {k}: {v}")
    neural_speed = np.mean([p["encode_s_per_mpix"] for name, pts in curves.items() if "steps" in name for p in pts])
    for codec in ("JPEG", "WEBP"):
        base = np.mean([p["encode_s_per_mpix"] for p in curves[codec]])
        print(f"encode time: neural {neural_speed:.3f} s/Mpix vs {codec} {base:.3f} s/Mpix "
              f"(ratio {neural_speed / base:.1f}×)")
    (out / "results.json").write_text(json.dumps({"scenes": [s for s, _ in pairs], "curves": curves, "bd_rate": bds},
                                                  indent=1))
    print(f"wrote {out / 'results.json'} and side-by-side PNGs under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
