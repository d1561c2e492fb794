"""The right view's BD-rate against separate coding once its symbols are syndrome coded (binned).

Combines two measurements of the same bundle on the same four held-out scenes:

* ``docs/report/stereo_bench.md`` (``benchmarks/stereo.py``): whole images through the serving code,
  the right view at each point beside a left at the top point: its payload bits and the PSNR of the
  joint decoder (``distributed, left at the top point``), against the separate baseline (same encoders,
  β_MI = 0, the same network as a post-filter of the view alone: ``separate, left at the top point``);
* ``docs/report/stereo_binning_p*_adaptive.json`` (``benchmarks/stereo_binning.py --scales adaptive``):
  real syndrome bits of the right view's symbols against their ANS bits, on tiles of each scene.

Binning is lossless (every tile is asserted equal), so the joint decoder's PSNR is unchanged and only
the rate moves. The right view's bits with binning are estimated **per scene**: the scene's payload
bits times (1 − the scene's measured saving on its tiles), then pooled over the scenes as the bench
pools (Σ bits / Σ dims) — so Art, with 64 % of the pixels and the smallest saving, weighs as it
does in the whole-image curves. That the tiles stand for their scene is the estimate's assumption
(8 tiles a scene; Art has ~360). Usage::

    python benchmarks/stereo_binning_bd.py                       # the checked-in reports
    python benchmarks/stereo_binning_bd.py --json docs/report/stereo_binning_bd.json
    python benchmarks/stereo_binning_bd.py --whole docs/report/stereo_binning_p3_adaptive_whole_*.json
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JOINT, SEPARATE = "distributed, left at the top point", "separate, left at the top point"


def bench_rows(report: Path, codec: str, view: str = "right") -> dict[str, tuple[float, float]]:
    """{point: (BPD, PSNR dB)} of one codec's rows in the bench report's R–D table."""
    rows = {}
    for line in report.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] == codec and cells[2] == view:
            rows[cells[1]] = (float(cells[3]), float(cells[5]))
    if not rows:
        raise ValueError(f"no {codec!r} {view} rows in {report}")
    return rows


def binned_rate(rows: list[dict], bpd_today: float) -> dict:
    """The right view's pooled BPD with binning, from one point's per-scene tile savings, and the savings."""
    payload = sum(r["payload_bits"] for r in rows)
    saving = {r["scene"]: 1 - r["real_bits_with_scales"] / r["ans_bits"] for r in rows}
    binned = sum(r["payload_bits"] * (1 - saving[r["scene"]]) for r in rows)
    tiles = sum(len(r["tiles"]) for r in rows)
    return {"bpd": bpd_today * binned / payload, "saving_payload_weighted": 1 - binned / payload,
            "saving_tiles_pooled": 1 - sum(r["real_bits_with_scales"] for r in rows) / sum(r["ans_bits"] for r in rows),
            "saving_by_scene": saving, "tiles": tiles}


def main(argv: list[str] | None = None) -> int:
    from training.study.bdrate import bd_rate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, default=REPO / "docs" / "report" / "stereo_bench.md")
    ap.add_argument("--binning", default=str(REPO / "docs" / "report" / "stereo_binning_p{q}_adaptive.json"),
                    help="per-point stereo_binning JSON, {q} = the right view's point; a glob pattern joins the "
                         "rows of every file it matches (e.g. one point measured in two runs, by scene)")
    ap.add_argument("--whole", nargs="*", default=[], type=Path,
                    help="stereo_binning JSON of whole scenes (every full tile): their rows replace the tiled rows "
                         "of the same scene and point")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    joint, separate = bench_rows(args.report, JOINT), bench_rows(args.report, SEPARATE)
    whole = {(r["scene"], r["point"]): r for path in args.whole for r in json.loads(path.read_text())["rows"]}
    points, missing = [], []
    for point in sorted(joint):
        q = point.split("/")[-1]
        pattern = args.binning.format(q=q)
        paths = [Path(p) for p in sorted(glob.glob(pattern))]
        if not paths:
            missing.append(pattern)
            continue
        rows = []
        for path in paths:
            data = json.loads(path.read_text())
            if Path(data["bundle"]).name != "stereo-middlebury" or any(r["point"] != point for r in data["rows"]):
                raise ValueError(f"{path} is not the shipped bundle at point {point}")
            rows += [whole.get((r["scene"], r["point"]), r) for r in data["rows"]]
        scenes = [r["scene"] for r in rows]
        if len(set(scenes)) != len(scenes):
            raise ValueError(f"{pattern}: a scene measured twice at point {point}")
        points.append({"point": point, "separate": separate[point], "joint": joint[point],
                       "binned": binned_rate(rows, joint[point][0]),
                       "whole_scenes": sorted(r["scene"] for r in rows if (r["scene"], r["point"]) in whole),
                       "source": [str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path) for path in paths]})
    if missing:
        print("not measured (skipped): " + ", ".join(missing))
    if len(points) < 2:
        print("fewer than two points measured: no BD-rate")
        return 1
    print("| right point | separate BPD | separate PSNR | joint BPD today | joint + binning BPD | joint PSNR | "
          "saving (payload-weighted / tiles pooled) | tiles |")
    print("|---|---|---|---|---|---|---|---|")
    for p in points:
        b = p["binned"]
        print(f"| {p['point']} | {p['separate'][0]:.4f} | {p['separate'][1]:.2f} | {p['joint'][0]:.4f} | "
              f"{b['bpd']:.4f} | {p['joint'][1]:.2f} | {100 * b['saving_payload_weighted']:.1f} % / "
              f"{100 * b['saving_tiles_pooled']:.1f} % | {b['tiles']}{' (whole scenes: ' + ', '.join(p['whole_scenes']) + ')' if p['whole_scenes'] else ''} |")
    sep_r, sep_q = [p["separate"][0] for p in points], [p["separate"][1] for p in points]
    curves = {"joint decoder alone (today)": [p["joint"][0] for p in points],
              "joint decoder + binning": [p["binned"]["bpd"] for p in points]}
    jq = [p["joint"][1] for p in points]
    result = {"points": points, "bd_rate_vs_separate": {}}
    for name, rate in curves.items():
        common = bd_rate(sep_r, sep_q, rate, jq)
        band = bd_rate(sep_r, sep_q, rate, jq, lo=30.0, hi=38.0)
        result["bd_rate_vs_separate"][name] = {"common range": common, "30-38 dB": band}
        print(f"right view, {name} vs separate: BD-rate {common:+.1f} % (common range), {band:+.1f} % (30–38 dB "
              f"∩ common), over {len(points)} points")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
