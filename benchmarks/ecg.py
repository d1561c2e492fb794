"""ECG benchmark: the variable-rate distributed codec vs separate coding vs wavelet-zstd, on unseen patients.

For each fold (patient-level split), trains (or reuses) two variable-rate bundles of a preset:
the distributed codec (joint decoder) and separate coding (``joint_decoder=False``: the same
encoders, quality points and budget, N decoders that each see one node). Every quality point
of both is measured on the fold's held-out test patients through the real path (ONNX
encoder → quantiser → ANS bytes → decoder); beside them, on the same windows:

* ``wavelet-zstd``, the anchor: db4 (periodization, 6 levels), one mid-tread step for every lead
  of a window, integer coefficients through zstd-19, header counted;
* ``dct-zstd`` (orthonormal DCT per window and lead, uniform step, zstd) and lossless FLAC and
  zstd (int16 at 1 µV).

Rate is 8 × payload bytes / samples (bits/sample/lead); PRDN is reported three ways: pooled over
all leads, mean of the per-lead PRDN, worst lead. The verdicts use the mean of leads:

* BD-rate of the distributed codec against wavelet-zstd over PRDN 2–12 % (pchip, log-rate);
* every distributed point below the wavelet curve;
* the clinical point: lowest rate with mean PRDN ≤ 5 % and no lead above 9 %;
* the joint decoder's saving over separate coding at equal PRDN, per point.

With several folds, the summary gives mean ± std over folds.

    python benchmarks/ecg.py --folds 0,1,2,3,4 --out runs/ecg-bench --report docs/report

``--report DIR`` writes ``DIR/ecg_rd.md`` with the R–D plot, per-lead PRDN bars and the error
spectrum of the default point (the figures of the first fold).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.ecg_rd import (  # noqa: E402  (the repo root is put on the path above)
    MEAN_OF_LEADS, POOLED, RATE, WORST_LEAD, bd_saving, clinical_point, measure_dct, measure_points,
    measure_wavelet, points_above_curve, rate_on_curve, savings_at_equal_prdn)

KINDS = ("distributed", "separate")
DEFAULT_ROOTS = [REPO.parent / "shared" / "data" / "ecg", REPO.parent / "shared" / "data" / "ecg-extra"]
WAVELET_STEPS = "0.008,0.01,0.015,0.02,0.03,0.04,0.06,0.08,0.12,0.16,0.24,0.32"
BD_RANGE = (2.0, 12.0)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.003", "model.hidden=64"]`` → {"lr": 0.003, "model.hidden": 64}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def apply_overrides(cfg, overrides: dict[str, Any]) -> None:
    """Set ``overrides`` on a TrainConfig in place; unknown fields are an error, not a silent no-op."""
    for key, value in overrides.items():
        obj, name = cfg, key
        if "." in key:
            head, name = key.split(".", 1)
            obj = getattr(cfg, head)
        if not hasattr(obj, name):
            raise ValueError(f"unknown config field {key!r}")
        setattr(obj, name, value)


def bundle_name(preset: str, kind: str, fold: int | None, steps: int | None, overrides: dict[str, Any]) -> str:
    """Folder name of one trained bundle; overrides are part of it so runs never collide."""
    name = f"{preset}-{kind}" + (f"-fold{fold}" if fold is not None else "") + (f"-steps{steps}" if steps else "")
    for key, value in sorted(overrides.items()):
        name += f"-{key.split('.')[-1]}{json.dumps(value).strip(chr(34))}"
    return name


def config_for(preset: str, kind: str, roots: list[str], fold: int | None, steps: int | None,
               overrides: dict[str, Any]):
    from training.presets import get_preset

    cfg = get_preset(preset).replace(progress=sys.stderr.isatty())
    cfg.data.params = {**cfg.data.params, "records": list(roots)}
    cfg.data.fold = fold
    if steps:
        cfg.steps = steps
    cfg.model.joint_decoder = kind == "distributed"
    apply_overrides(cfg, overrides)
    return cfg


def train_kinds(preset: str, roots: list[str], fold: int | None, steps: int | None, out: Path,
                kinds: tuple[str, ...], overrides: dict[str, Any]) -> dict[str, Path]:
    """The bundle of each kind for this fold, trained unless already in ``out``."""
    from training.pipeline import train_and_export

    paths = {}
    for kind in kinds:
        path = out / bundle_name(preset, kind, fold, steps, overrides)
        if not (path / "manifest.json").is_file():
            t0 = time.time()
            train_and_export(config_for(preset, kind, roots, fold, steps, overrides), path)
            print(f"trained {path.name} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        paths[kind] = path
    return paths


def verdicts(rows: dict[str, list[dict]], wavelet: list[dict]) -> dict[str, Any]:
    """The issue's checks on one fold, all on mean-of-leads PRDN."""
    dist, sep = rows.get("distributed", []), rows.get("separate", [])
    out: dict[str, Any] = {}
    if dist:
        out["bd_vs_wavelet"] = bd_saving(dist, wavelet, MEAN_OF_LEADS, *BD_RANGE)
        above = points_above_curve(dist, wavelet, MEAN_OF_LEADS)
        out["points_above_wavelet"] = [p["quality"] for p in above]
        out["points_compared_with_wavelet"] = sum(
            not np.isnan(rate_on_curve(wavelet, p[MEAN_OF_LEADS], MEAN_OF_LEADS)) for p in dist)
        clinical = clinical_point(dist)
        out["clinical"] = None if clinical is None else {
            "quality": clinical["quality"], RATE: clinical[RATE], MEAN_OF_LEADS: clinical[MEAN_OF_LEADS],
            WORST_LEAD: clinical[WORST_LEAD]}
    if dist and sep:
        out["joint_vs_separate"] = savings_at_equal_prdn(dist, sep, MEAN_OF_LEADS)
        out["bd_vs_separate"] = bd_saving(dist, sep, MEAN_OF_LEADS)
    return out


def mean_std(values: list[float], digits: int = 1) -> str:
    """``mean ± std`` over folds (NaN and None left out; ``n/a`` when nothing is left)."""
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], float)
    if not len(v):
        return "n/a"
    return f"{v.mean():+.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v[0]:+.{digits}f}"


def print_fold(fold, data, split: str, rows: dict[str, list[dict]], wavelet: list[dict], dct: list[dict],
               lossless: dict, verdict: dict) -> None:
    windows = getattr(data, split)
    head = f"fold {fold}" if fold is not None else "fixed split"
    print(f"\n== {head}: {split} split, {data.info['patients'][split]} patients, {len(windows)} windows of "
          f"{windows.shape[-1] / data.sample_rate:.2f} s, {windows.shape[1]} nodes × {windows.shape[2]} leads "
          f"({data.info['split']})")
    print(f"{'codec':<30}{'bits/sample/lead':>17}{'kbit/s':>9}{'PRDN pooled':>12}{'mean':>8}{'worst':>8}")

    def line(label: str, r: dict) -> None:
        print(f"{label:<30}{r[RATE]:>17.3f}{r['kbit_per_s']:>9.2f}{r[POOLED]:>12.2f}{r[MEAN_OF_LEADS]:>8.2f}"
              f"{r[WORST_LEAD]:>8.2f}")

    for kind, pts in rows.items():
        for r in pts:
            line(f"{kind} q={r['quality']}", r)
    for r in wavelet:
        line(f"wavelet-zstd step={r['step_mv'] * 1000:g} µV", r)
    for r in dct:
        line(f"dct-zstd step={r['step_mv'] * 1000:g} µV", r)
    for name in ("flac", "zstd"):
        print(f"{name + ' (lossless, 1 µV)':<30}{lossless[f'{name}_bits_per_sample']:>17.3f}")
    bd = verdict.get("bd_vs_wavelet")
    if bd:
        print(f"BD-rate distributed vs wavelet-zstd (mean-of-leads PRDN {bd['lo']:.2f}–{bd['hi']:.2f} %): "
              f"{-bd['saving_percent']:+.1f} %")
        print(f"distributed points above the wavelet curve: {verdict['points_above_wavelet'] or 'none'} "
              f"(of {verdict['points_compared_with_wavelet']} inside its PRDN range)")
        c = verdict["clinical"]
        print("clinical point (mean PRDN ≤ 5 %, no lead > 9 %): " + (
            f"q={c['quality']} at {c[RATE]:.3f} bits/sample/lead (mean {c[MEAN_OF_LEADS]:.2f} %, "
            f"worst lead {c[WORST_LEAD]:.2f} %)" if c else "none"))
    for s in verdict.get("joint_vs_separate", []):
        print(f"at mean PRDN {s['prdn_percent']:.2f} %: distributed {s['distributed_bits']:.3f} vs separate "
              f"{s['separate_bits']:.3f} bits/sample/lead → {s['saving_percent']:+.1f} % fewer bits")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", default=[],
                        help="record root (repeatable; default ../shared/data/ecg and ../shared/data/ecg-extra)")
    parser.add_argument("--preset", default="ecg-12lead")
    parser.add_argument("--folds", default="", help="comma-separated CV folds 0–4 (default: the fixed 80/10/10 split)")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ecg-bench")
    parser.add_argument("--kinds", default=",".join(KINDS), help="distributed,separate or one of them")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training-config override for both kinds (repeatable), e.g. lr=0.003")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="patients to measure on: test (held out) or val (for choosing settings)")
    parser.add_argument("--wavelet-steps", default=WAVELET_STEPS, help="wavelet-zstd quantiser steps (mV)")
    parser.add_argument("--dct-steps", default="0.02,0.04,0.08,0.16", help="dct-zstd steps (mV); empty for none")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--report", type=Path, help="write ecg_rd.md and its figures into this folder")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                        help="no measuring: combine the folds of earlier runs' --json files (e.g. folds run in "
                             "parallel) into one summary, --json and --report")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args)

    import torch

    from training.ecg_eval import lossless_reference
    from training.evaluate import dataset_for_bundle
    from ndsc.bundle import load_bundle

    torch.set_num_threads(1)
    roots = args.data or [str(r) for r in DEFAULT_ROOTS if r.is_dir()]
    if not roots:
        parser.error("no record root: pass --data DIR (the PhysioNet 12-lead records)")
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds: choose from {KINDS}")
    overrides = parse_overrides(args.overrides)
    folds: list[int | None] = [int(f) for f in args.folds.split(",") if f] or [None]
    results = []
    for fold in folds:
        paths = train_kinds(args.preset, roots, fold, args.steps, args.out, kinds, overrides)
        data = dataset_for_bundle(load_bundle(paths[kinds[0]]))  # the fold's patient split
        leads, fs, windows = data.info["leads"], data.sample_rate, getattr(data, args.split)
        rows = {kind: measure_points(p, windows, leads, fs) for kind, p in paths.items()}
        wavelet = [measure_wavelet(data, windows, leads, fs, float(s)) for s in args.wavelet_steps.split(",") if s]
        dct = [measure_dct(data, windows, leads, fs, float(s)) for s in args.dct_steps.split(",") if s]
        lossless = lossless_reference(windows, fs)
        verdict = verdicts(rows, wavelet)
        print_fold(fold, data, args.split, rows, wavelet, dct, lossless, verdict)
        results.append({"fold": fold, "rows": rows, "wavelet_zstd": wavelet, "dct_zstd": dct, "lossless": lossless,
                        "verdict": verdict, "patients": data.info["patients"][args.split],
                        "windows": int(len(windows)), "split_kind": data.info["split"]})
        if args.report and fold == folds[0]:
            from training.ecg_report import default_point_figures

            figures = default_point_figures(paths["distributed"], windows, leads, fs, args.report)
            results[-1]["figures"] = figures

    summary = print_summary(results)
    command = shlex.join(["python", "benchmarks/ecg.py", *(argv or sys.argv[1:])])
    write_json(args.json, {"results": results, "summary": summary, "steps": args.steps, "command": command,
                           "preset": args.preset, "split": args.split, "overrides": overrides, "roots": roots})
    if args.report:
        from training.ecg_report import write_report

        write_report(args.report, results, summary, command)
    return 0


def print_summary(results: list[dict]) -> dict[str, Any]:
    summary = summarise(results)
    print("\n== summary over folds " + ", ".join(str(r["fold"]) for r in results))
    for key, text in summary["lines"].items():
        print(f"{key}: {text}")
    return summary


def write_json(path: Path | None, obj: dict[str, Any]) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=1, default=float))


def merge(args) -> int:
    """Summary and report of the folds in earlier ``--json`` files (the first file's fold first)."""
    runs = [json.loads(p.read_text()) for p in args.merge]
    by_fold: dict[Any, dict] = {}
    for run in runs:  # the same fold from two runs (e.g. one per kind): one result with both kinds' rows
        for r in run["results"]:
            if r["fold"] in by_fold:
                merged = by_fold[r["fold"]]
                merged["rows"] = {**merged["rows"], **r["rows"]}
                merged["verdict"] = verdicts(merged["rows"], merged["wavelet_zstd"])
            else:
                by_fold[r["fold"]] = {**r, "rows": dict(r["rows"])}
    results = sorted(by_fold.values(), key=lambda r: (r["fold"] is None, r["fold"] or 0))
    summary = print_summary(results)
    write_json(args.json, {**runs[0], "results": results, "summary": summary,
                           "merged_from": [str(p) for p in args.merge]})
    if args.report:
        from training.ecg_report import default_point_figures, write_report
        from training.evaluate import dataset_for_bundle
        from ndsc.bundle import load_bundle

        first = results[0]
        bundle = args.out / first["rows"]["distributed"][0]["bundle"]
        if bundle.is_dir():
            data = dataset_for_bundle(load_bundle(bundle))
            windows = getattr(data, runs[0].get("split", "test"))
            if not first["dct_zstd"]:  # runs made without dct-zstd: measure it on the first fold for the plot
                first["dct_zstd"] = [measure_dct(data, windows, data.info["leads"], data.sample_rate, float(s))
                                     for s in args.dct_steps.split(",") if s]
            first["figures"] = default_point_figures(bundle, windows, data.info["leads"], data.sample_rate,
                                                     args.report)
        commands = [run.get("command") or "python benchmarks/ecg.py" + "".join(
            f" --folds {r['fold']}" for r in run["results"] if r["fold"] is not None)
            + f" --kinds {','.join(run['results'][0]['rows'])}" + (f" --steps {run['steps']}" if run.get("steps") else "")
            + f" --out {args.out} --json {path}" for run, path in zip(runs, args.merge)]
        write_report(args.report, results, summary,
                     "; ".join(c for c in commands if c) + f"; then python benchmarks/ecg.py --merge ... --report {args.report}")
    return 0


def summarise(results: list[dict]) -> dict[str, Any]:
    """Mean ± std over folds of the verdicts (BD-rate, clinical rate, joint saving)."""
    bd = [r["verdict"].get("bd_vs_wavelet", {}).get("saving_percent") for r in results]
    clinical = [(r["verdict"].get("clinical") or {}).get(RATE) for r in results]
    joint = [np.mean([s["saving_percent"] for s in r["verdict"].get("joint_vs_separate", [])] or [np.nan])
             for r in results]
    above = sum(len(r["verdict"].get("points_above_wavelet", [])) for r in results)
    lines = {
        "BD-rate vs wavelet-zstd, mean-of-leads PRDN both curves cover within 2–12 % (negative = fewer bits)":
            mean_std([-b if b is not None else None for b in bd]) + " %",
        "distributed points above the wavelet curve (all folds)": str(above),
        "clinical point rate (mean PRDN ≤ 5 %, no lead > 9 %), bits/sample/lead":
            mean_std([c if c is not None else np.nan for c in clinical], digits=3).lstrip("+"),
        "joint decoder saving over separate coding at equal mean PRDN (mean over points)": mean_std(joint) + " %",
    }
    return {"lines": lines, "bd_vs_wavelet_percent": [-b if b is not None else None for b in bd],
            "clinical_bits": clinical, "joint_saving_percent": joint, "points_above_wavelet": above}


if __name__ == "__main__":
    sys.exit(main())
