"""``ndsc stereo-train`` and ``ndsc stereo-eval`` (heavy imports inside the handlers)."""
from __future__ import annotations

import argparse
import json
import os


def configure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stereo-train", help="train a stereo image codec on a folder of pairs and export a bundle")
    p.add_argument("--root", required=True, help="folder of stereo pairs (Middlebury, KITTI or left/right.png layouts)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--preset", default="stereo-small", help="stereo-small | stereo-quick")
    p.add_argument("--steps", type=int, help="override the number of steps")
    p.add_argument("--lmbda", type=float, help="override λ (rate weight)")
    p.add_argument("--separate", action="store_true", help="no cross-view fusion and β_MI = 0: the separate-coding baseline")
    p.add_argument("--fold", type=int, help="5-fold split: index of the test fold (default: 80/10/10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--checkpoint", help="also write a self-describing training checkpoint here")
    p.add_argument("--device", help="torch device to train on: auto (CUDA if present, else CPU; default), cpu, cuda, cuda:N")
    p.set_defaults(handler=_train)

    p = sub.add_parser("stereo-eval", help="code whole stereo images with a bundle; write side-by-side PNGs")
    p.add_argument("bundle", nargs="?", help="stereo bundle (default: the shipped stereo-middlebury)")
    p.add_argument("--quality", help="operating point of a variable-rate bundle (default: its default point)")
    p.add_argument("--images", help="folder of pairs, or 'skimage' for the Motorcycle pair "
                                    "(default: the bundle's held-out scenes)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of the bundle's data")
    p.add_argument("--out", help="write <scene>.png (originals above, reconstructions below) here")
    p.add_argument("--baselines", action="store_true", help="also JPEG and WebP per view at the same bytes")
    p.add_argument("--inception-weights", default=os.environ.get("NDSC_INCEPTION_WEIGHTS"),
                   help="local InceptionV3 weights (torch-fidelity state_dict) for FID; default $NDSC_INCEPTION_WEIGHTS; "
                        "never downloaded (absent: FID is not computed)")
    p.add_argument("--json", action="store_true", help="print the full JSON result")
    p.set_defaults(handler=_eval)


def _train(args) -> int:
    import torch

    from training.pipeline import train_and_export
    from training.presets import get_preset, separate_baseline

    torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset).replace(threads=args.threads)
    if cfg.data.kind != "stereo":
        raise SystemExit(f"preset {args.preset} is not a stereo preset")
    cfg.data.params["root"] = args.root
    cfg.data.fold = args.fold
    if args.separate:
        separate_baseline(cfg)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.lmbda is not None:
        cfg.lmbda = args.lmbda
    if args.device is not None:
        cfg.device = args.device
    path, report = train_and_export(cfg, args.out, checkpoint=args.checkpoint)
    print(f"bundle {path} ({report['bundle_id']}); {report['windows']} held-out tiles: "
          f"{report['bits_per_sample_sum']:.4f} bits/dimension summed over views, mean MSE {report['mse_mean']:.2f}; "
          f"trained on {report['train_device']} in {report['train_seconds']:.1f} s")
    print(f"whole-image figures: ndsc stereo-eval {path} --out {path}/recon")
    return 0


def _load_pairs(args, bundle_path: str):
    from ndsc.bundle import load_bundle
    from ndsc.sources.images import find_pairs, read_pair, skimage_pair
    from models.config import TrainConfig
    from training.datasets_stereo import full_pairs

    if args.images == "skimage":
        return [("skimage-motorcycle", skimage_pair())]
    if args.images:
        return [(q.scene, read_pair(q)) for q in find_pairs(args.images)]
    cfg = TrainConfig.from_dict(load_bundle(bundle_path).training_config)
    return full_pairs(cfg.data, args.split)


def _eval(args) -> int:
    from training.baselines_image import at_matched_rate, point
    from training.stereo_eval import evaluate_pairs

    if args.bundle is None:
        from ndsc.bundles import STEREO_BUNDLE, default_bundle

        args.bundle = str(default_bundle(STEREO_BUNDLE))
    pairs = _load_pairs(args, args.bundle)
    result = evaluate_pairs(args.bundle, pairs, out_dir=args.out, inception_weights=args.inception_weights,
                            quality=args.quality)
    if args.baselines:
        by_scene = dict(pairs)
        for row in result["pairs"]:
            for i, view in enumerate(row["views"]):
                image = by_scene[row["scene"]][i]
                view["baselines"] = {c: point(image, at_matched_rate(image, c, view["bytes"])) for c in ("jpeg", "webp")}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    point = f", quality {result['quality']}" if result["quality"] else ""
    print(f"bundle {result['bundle_id']}{point}: rate = payload bytes × 8; BPD = bits / (H·W·3)")
    print(f"{'scene':>20} {'view':>6} {'bytes':>8} {'bpp':>7} {'BPD':>7} {'PSNR dB':>8} {'MS-SSIM':>8} {'s/Mpix':>7}"
          + ("  JPEG@rate dB  WebP@rate dB" if args.baselines else ""))
    for row in result["pairs"]:
        for v in row["views"]:
            line = (f"{row['scene']:>20} {v['view']:>6} {v['bytes']:8d} {v['bpp']:7.4f} {v['bpd']:7.4f} "
                    f"{v['psnr_db']:8.2f} {v['ms_ssim']:8.4f} {v['encode_s_per_mpix']:7.3f}")
            if "baselines" in v:
                b = v["baselines"]
                line += f"  {b['jpeg']['psnr_db']:6.2f} ({b['jpeg']['bpp']:.3f})  {b['webp']['psnr_db']:6.2f} ({b['webp']['bpp']:.3f})"
            print(line)
    t = result["total"]
    print(f"{'all':>20} {'':>6} {t['bytes']:8d} {t['bpp']:7.4f} {t['bpd']:7.4f} {t['psnr_db']:8.2f} {t['ms_ssim']:8.4f} "
          f"{t['encode_s_per_mpix']:7.3f}")
    fid = result["fid"]
    print(f"FID: {fid['fid']:.3f} over {fid['images']} images; Inception weights {fid['weights']}; {fid['note']}"
          if fid["fid"] is not None else fid["reason"])
    if args.out:
        print(f"side-by-side PNGs (originals above, reconstructions below) in {args.out}")
    return 0
