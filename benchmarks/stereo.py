"""Stereo R–D benchmark: distributed vs separate neural coding vs JPEG/WebP on held-out scenes, per view.

Every point is measured on whole images of the scenes the bundles never trained on (the
split's validation and test scenes; training reads neither), coded through the serving
code (ONNX edge encoder, static-table ANS, joint decoder): rate = payload bytes × 8, BPD =
bits / (H·W·3), PSNR of the pooled MSE of 8-bit reconstructions, mean MS-SSIM. One curve
per codec and camera: the neural codecs at each quality point of their bundle; JPEG and
WebP (Pillow files, headers included) both at the distributed codec's bytes per view
(matched bytes) and as quality sweeps for the BD-rates, which are given over PSNR 30–38 dB
(clipped to the range both curves cover). Besides both views at one point, each neural
codec codes the right view at every point while the left codes at the top point: the
Wyner–Ziv setting, where the left view is side information the joint decoder can use.
Writes the markdown report and results.json.

    python benchmarks/stereo.py --joint ndsc/bundles/stereo-middlebury --separate runs/stereo/separate \\
        --report docs/report/stereo_bench.md
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SWEEP = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
VIEWS = ("left", "right")
ALL = "both views"
#: the curves of the right view coded at each point while the left codes at the top point
WZ_JOINT, WZ_SEPARATE = "distributed, left at the top point", "separate, left at the top point"


def neural_curve(bundle: Path, pairs: list) -> list[dict]:
    """One point per quality point of ``bundle``: per camera and pooled figures."""
    from ndsc.bundle import load_bundle
    from training.stereo_eval import evaluate_pairs

    points = []
    for q in load_bundle(bundle).quality_names or ("",):
        r = evaluate_pairs(bundle, pairs, quality=q or None)
        points.append({"quality": q, ALL: r["total"], **{v["view"]: v for v in r["per_view"]},
                       "pairs": r["pairs"]})
    return points


def side_information_curve(bundle: Path, pairs: list) -> list[dict]:
    """The right view coded at each point of ``bundle`` while the left codes at the top point.

    A Wyner–Ziv pair: the well-coded left view is side information for the right, which the
    joint decoder (side information, fusion) may use and the separate one cannot. Points are
    named ``"5/q"`` (left/right) and carry both views' figures."""
    from ndsc.bundle import load_bundle
    from training.stereo_eval import evaluate_pairs

    names = load_bundle(bundle).quality_names
    points = []
    for q in names:
        r = evaluate_pairs(bundle, pairs, quality=(names[-1], q))
        points.append({"quality": f"{names[-1]}/{q}", ALL: r["total"], **{v["view"]: v for v in r["per_view"]},
                       "pairs": r["pairs"]})
    return points


def matched_bytes(pairs: list, neural: list[dict], codec: str) -> list[dict]:
    """``codec`` per view at (at most) the bytes the neural codec wrote for that view, one point per neural point."""
    from training.baselines_image import at_matched_rate, pooled

    out = []
    for p in neural:
        coded = [[at_matched_rate(pair[i], codec, row["views"][i]["bytes"]) for i in range(len(pair))]
                 for (_, pair), row in zip(pairs, p["pairs"])]
        point = {"quality": p["quality"]}
        for i, view in enumerate(VIEWS):
            point[view] = pooled([pair[i] for _, pair in pairs], [c[i].reconstruction for c in coded],
                                 [c[i].nbytes for c in coded])
        point[ALL] = pooled([v for _, pair in pairs for v in pair], [x.reconstruction for c in coded for x in c],
                            [x.nbytes for c in coded for x in c])
        out.append(point)
    return out


def sweep_curve(pairs: list, codec: str) -> list[dict]:
    """``codec`` at each quality of :data:`SWEEP`, per camera and pooled over both."""
    from training.baselines_image import sweep

    per_view = {view: sweep([pair[i] for _, pair in pairs], codec, SWEEP) for i, view in enumerate(VIEWS)}
    dims = {view: sum(pair[i].size for _, pair in pairs) for i, view in enumerate(VIEWS)}
    out = []
    for k, q in enumerate(SWEEP):
        coded = {view: per_view[view][k] for view in VIEWS}
        nbytes = sum(c["bytes"] for c in coded.values())
        total_dims = sum(dims.values())
        # the pooled MSE of both cameras, from each camera's pooled MSE weighted by its size
        mse = sum(10 ** (-coded[v]["psnr_db"] / 10) * dims[v] for v in VIEWS) / total_dims
        both = {"bytes": nbytes, "bpp": 24.0 * nbytes / total_dims, "bpd": 8.0 * nbytes / total_dims,
                "psnr_db": -10 * math.log10(mse), "ms_ssim": sum(c["ms_ssim"] for c in coded.values()) / len(coded)}
        out.append({"quality": str(q), **coded, ALL: both})
    return out


def bd_table(curves: dict[str, list[dict]]) -> list[tuple[str, str, dict[str, str]]]:
    """BD-rate (30–38 dB and common range) and BD-PSNR of each comparison, per view."""
    from training.study.bdrate import bd_psnr, bd_rate

    def rate(anchor: list[dict], test: list[dict], view: str, lo: float | None, hi: float | None) -> str:
        value = bd_rate(*(_rd(anchor, view)), *(_rd(test, view)), lo=lo, hi=hi)
        return "n/a (no common PSNR range)" if math.isnan(value) else f"{value:+.1f} %"

    def gain(anchor: list[dict], test: list[dict], view: str) -> str:
        value = bd_psnr(*(_rd(anchor, view)), *(_rd(test, view)))
        return "n/a (no common rate range)" if math.isnan(value) else f"{value:+.2f} dB"

    comparisons = [(test, anchor, (*VIEWS, ALL)) for test, anchor in (
        ("distributed", "WebP"), ("separate", "WebP"), ("distributed", "JPEG"), ("distributed", "separate"))]
    comparisons.append((WZ_JOINT, WZ_SEPARATE, ("right",)))  # only the right view's rate varies there
    rows = []
    for test, anchor, views in comparisons:
        for view in views:
            a, t = curves[anchor], curves[test]
            rows.append((f"{test} vs {anchor}", view, {"30–38 dB": rate(a, t, view, 30.0, 38.0),
                                                       "common range": rate(a, t, view, None, None),
                                                       "BD-PSNR": gain(a, t, view)}))
    return rows


def _rd(curve: list[dict], view: str) -> tuple[list[float], list[float]]:
    return [p[view]["bpd"] for p in curve], [p[view]["psnr_db"] for p in curve]


def summary(curves: dict[str, list[dict]], bds: list) -> list[str]:
    """The claims the issue asks about, each as a measured line."""
    lines = []
    for name in ("distributed", "separate"):
        under = [p for p in curves[name] if p[ALL]["bpd"] <= 0.4]
        if under:
            best = max(under, key=lambda p: p[ALL]["psnr_db"])
            v = best[ALL]
            verdict = "meets" if v["psnr_db"] >= 30 else "misses"
            lines.append(f"- {name}: the best point at ≤ 0.4 bit/dim (both views) is quality {best['quality']}, "
                         f"{v['bpd']:.3f} bit/dim at {v['psnr_db']:.2f} dB (left {best['left']['psnr_db']:.2f}, "
                         f"right {best['right']['psnr_db']:.2f}): {verdict} the seed's ≥ 30 dB at ≤ 0.4 bit/dim.")
        else:
            lines.append(f"- {name}: no point at ≤ 0.4 bit/dim.")
    by = {(name, view): vals for name, view, vals in bds}
    for view in VIEWS:
        vals = by[("distributed vs separate", view)]
        lines.append(f"- joint vs separate decoding, {view} view: BD-PSNR {vals['BD-PSNR']}, "
                     f"BD-rate {vals['common range']} (common range); per point "
                     f"{_per_point(curves['distributed'], curves['separate'], view)}.")
    vals = by[(f"{WZ_JOINT} vs {WZ_SEPARATE}", "right")]
    lines.append(f"- joint vs separate decoding, right view coded at each point while the left codes at the top "
                 f"point (the left is side information): BD-PSNR {vals['BD-PSNR']}, BD-rate {vals['common range']} "
                 f"(common range); per point {_per_point(curves[WZ_JOINT], curves[WZ_SEPARATE], 'right')}.")
    gaps = [p["left"]["psnr_db"] - p["right"]["psnr_db"] for p in curves["distributed"]]
    lines.append(f"- distributed, both views at one point: left − right PSNR from {min(gaps):+.2f} to "
                 f"{max(gaps):+.2f} dB over the points.")
    for name in ("distributed", "separate"):
        vals = [by[(f"{name} vs WebP", view)]["30–38 dB"] for view in (*VIEWS, ALL)]
        lines.append(f"- {name} vs WebP, BD-rate over 30–38 dB: left {vals[0]}, right {vals[1]}, both {vals[2]}.")
    return lines


def _per_point(joint: list[dict], separate: list[dict], view: str) -> str:
    """``view``'s PSNR gain of ``joint`` over ``separate`` at each point, with both rates (equal encoders
    give nearly equal rates, so this reads as the gain at equal rate)."""
    return ", ".join(f"{j['quality']}: {j[view]['psnr_db'] - s[view]['psnr_db']:+.2f} dB at "
                     f"{j[view]['bpd']:.3f} vs {s[view]['bpd']:.3f} bit/dim" for j, s in zip(joint, separate))


def _fusion(meta: dict, name: str) -> str:
    """A bundle's learned refinement in words: its width and what training it cost."""
    f = meta[f"{name}_fusion"]
    if not f:
        return "none"
    return (f"width {f['config']['hidden']}, {f['config']['steps']} steps, {f['coding_seconds'] + f['train_seconds']:.0f} s "
            f"(coding the training scenes {f['coding_seconds']:.0f} s)")


def report(args: argparse.Namespace, scenes: str, curves: dict[str, list[dict]], matched: dict[str, list[dict]],
           bds: list, meta: dict) -> str:
    """The markdown report."""
    cmd = "python benchmarks/stereo.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Stereo R–D: distributed vs separate neural coding vs JPEG/WebP, per view",
        "",
        "Made by (CPU, one thread; regenerate with the same command):",
        "",
        "```bash",
        "python scripts/build_stereo_bundle.py                                   # the shipped joint bundle",
        "python scripts/build_stereo_bundle.py --separate --out runs/stereo/separate  # separate baseline",
        cmd,
        "```",
        "",
        f"Held-out scenes (never trained on): {scenes}. Whole images, coded through the serving code; "
        "rate = payload (file) bytes × 8; BPD = bits / (H·W·3); PSNR of the pooled MSE of 8-bit "
        "reconstructions; MS-SSIM the mean over images.",
        "",
        f"Bundles: distributed `{meta['joint']}` ({meta['joint_id'][:19]}…, β_MI = {meta['joint_beta']}, "
        f"side information at decoding: {meta['joint_side_information']}, learned view fusion: "
        f"{_fusion(meta, 'joint')}, codec trained {meta['joint_seconds']:.0f} s on {meta['joint_device']}); "
        f"separate `{meta['separate']}` (β_MI = {meta['separate_beta']}, same g_a and g_s without cross-view "
        f"attention or side information, post-filter of each view alone: {_fusion(meta, 'separate')}, "
        f"codec trained {meta['separate_seconds']:.0f} s on {meta['separate_device']}).",
        "",
        "## Summary (computed from the tables below)",
        "",
        *summary(curves, bds),
        "",
        "## R–D points per view",
        "",
        "| codec | point | view | BPD | bpp | PSNR dB | MS-SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, pts in {**curves, **{f"{k} at matched bytes": v for k, v in matched.items()}}.items():
        for p in pts:
            for view in (*VIEWS, ALL):
                v = p[view]
                lines.append(f"| {name} | {p['quality']} | {view} | {v['bpd']:.4f} | {v['bpp']:.4f} | "
                             f"{v['psnr_db']:.2f} | {v['ms_ssim']:.4f} |")
    lines += ["", "## BD-rate (negative: fewer bits for the same PSNR) and BD-PSNR (positive: better at equal rate)",
              "", "| comparison | view | BD-rate 30–38 dB | BD-rate, common range | BD-PSNR |", "|---|---|---|---|---|"]
    for name, view, vals in bds:
        lines.append(f"| {name} | {view} | {vals['30–38 dB']} | {vals['common range']} | {vals['BD-PSNR']} |")
    lines += ["", f"Benchmark wall time {meta['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--joint", default=str(REPO / "ndsc" / "bundles" / "stereo-middlebury"),
                    help="the distributed (joint-decoder) bundle")
    ap.add_argument("--separate", default=str(REPO / "runs" / "stereo" / "separate"),
                    help="the separate-coding bundle (same encoders, no cross-view fusion, β_MI = 0)")
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "stereo" / "middlebury"))
    ap.add_argument("--splits", default="val,test", help="held-out splits to evaluate on")
    ap.add_argument("--report", help="write the markdown report here (default: print it)")
    ap.add_argument("--json", help="write every figure here as JSON")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # one core for everything measured here
    from ndsc.bundle import load_bundle
    from models.config import TrainConfig
    from training.datasets_stereo import full_pairs

    t0 = time.time()
    joint, separate = load_bundle(args.joint), load_bundle(args.separate)
    tested = {tuple(b.extra["data_info"]["test_scenes"]) for b in (joint, separate)}
    if len(tested) != 1:
        raise SystemExit(f"the bundles were trained on different splits: {tested}")
    cfg = TrainConfig.from_dict(joint.training_config)
    cfg.data.params["root"] = args.root
    pairs = [p for split in args.splits.split(",") for p in full_pairs(cfg.data, split)]
    curves = {"distributed": neural_curve(joint.path, pairs), "separate": neural_curve(separate.path, pairs),
              WZ_JOINT: side_information_curve(joint.path, pairs), WZ_SEPARATE: side_information_curve(separate.path, pairs)}
    matched = {c.upper() if c == "jpeg" else "WebP": matched_bytes(pairs, curves["distributed"], c)
               for c in ("jpeg", "webp")}
    curves["JPEG"], curves["WebP"] = sweep_curve(pairs, "jpeg"), sweep_curve(pairs, "webp")
    for pts in curves.values():
        for p in pts:
            p.pop("pairs", None)
    bds = bd_table(curves)
    sep_cfg = TrainConfig.from_dict(separate.training_config)
    meta = {"joint": args.joint, "joint_id": joint.bundle_id, "joint_beta": cfg.beta_mi,
            "joint_side_information": bool(joint.decoder["args"].get("side_information", False)),
            "joint_seconds": joint.evaluation["test"]["train_seconds"],
            "joint_device": joint.evaluation["test"]["train_device"],
            "separate": args.separate, "separate_beta": sep_cfg.beta_mi,
            "separate_seconds": separate.evaluation["test"]["train_seconds"],
            "separate_device": separate.evaluation["test"]["train_device"],
            "joint_fusion": joint.evaluation.get("view_fusion"), "separate_fusion": separate.evaluation.get("view_fusion"),
            "wall_s": time.time() - t0}
    scenes = ", ".join(f"{s} {p.shape[-1]}×{p.shape[-2]}" for s, p in pairs)
    text = report(args, scenes, curves, matched, bds, meta)
    if args.report:
        Path(args.report).write_text(text)
        print(f"wrote {args.report}")
    else:
        print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"scenes": [s for s, _ in pairs], "curves": curves,
                                               "matched_bytes": matched, "bd": bds, "meta": meta}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
