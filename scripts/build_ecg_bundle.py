#!/usr/bin/env python
"""Train the shipped real-ECG bundle ``ndsc/bundles/ecg-12lead`` (4 nodes × 3 leads, 500 Hz).

Usage::

    python scripts/build_ecg_bundle.py                 # ../shared/data/ecg (+ ecg-extra), preset ecg-12lead
    python scripts/build_ecg_bundle.py --steps 600 --out /tmp/ecg-bundle      # one torch thread by default
    python scripts/build_ecg_bundle.py --reuse runs/ecg-bench/ecg-12lead-distributed   # no second training

Trains preset ``ecg-12lead`` (variable rate: six quality points in one bundle) on every 12-lead
PhysioNet record (≥ 250 Hz) under ``../shared/data/ecg`` and ``../shared/data/ecg-extra`` (split
by patient; the record lists of each split go into the manifest), exports it, and records in the
manifest, per quality point, real-bit figures on the held-out patients (PRDN pooled, mean of
leads, worst lead, beside wavelet-zstd at the same mean PRDN) and on the ECG that ships with
pydicom (a patient the model never saw, and what the demo replays). Uses the GPU when one is
present. The data are only read here, never copied into the repository.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

DEFAULT_DATA = [REPO.parent / "shared" / "data" / "ecg", REPO.parent / "shared" / "data" / "ecg-extra"]
DEFAULT_OUT = REPO / "ndsc" / "bundles" / "ecg-12lead"
EDGE_SOURCE = "dicom:pydicom#loop=1"  # what the demo and compose replay: a patient no split holds


def relative_records(data: list[Path]) -> list[str]:
    """The record folders as the manifest names them: relative to the repository, never a home folder."""
    return [os.path.relpath(d, REPO) for d in data if d.is_dir()]


def build(data: list[Path], out: Path, steps: int | None, threads: int) -> dict:
    import torch

    from training.pipeline import train_and_export
    from training.presets import get_preset

    torch.set_num_threads(threads)
    cfg = get_preset("ecg-12lead").replace(threads=threads)
    if steps:
        cfg.steps = steps
    cfg.data.params = {**cfg.data.params, "records": relative_records(data), "edge_source": EDGE_SOURCE}
    t0 = time.time()
    path, report = train_and_export(cfg, out)
    figures = record_figures(path)
    size = sum(f.stat().st_size for f in path.iterdir())
    return {"path": str(path), "bytes": size, "seconds": round(time.time() - t0, 1), **figures}


def reuse(trained: Path, data: list[Path], out: Path) -> dict:
    """Ship a bundle ``benchmarks/ecg.py`` already trained with this preset on the fixed split.

    Same preset, seed, records and patient split as :func:`build`, so the weights are what a
    build would train; only the manifest's record paths (made relative to the repository) and the
    demo's replay source change, and the id is recomputed over them.
    """
    import dataclasses
    import shutil

    from ndsc.bundle import load_bundle, write_manifest
    from models.config import TrainConfig
    from training.presets import get_preset

    bundle = load_bundle(trained)
    cfg = TrainConfig.from_dict(bundle.training_config)
    preset = get_preset("ecg-12lead")
    # The default point is the one thing that may differ: it is chosen after measuring the points.
    if dataclasses.replace(cfg.model, default_quality=None) != dataclasses.replace(preset.model, default_quality=None) \
            or cfg.data.fold is not None or cfg.seed != preset.seed or cfg.steps != preset.steps:
        raise SystemExit(f"{trained} was not trained with preset ecg-12lead on the fixed split")
    records = relative_records(data)
    if sorted(os.path.realpath(r) for r in cfg.data.params["records"]) != sorted(os.path.realpath(r) for r in records):
        raise SystemExit(f"{trained} trained on {cfg.data.params['records']}, not {records}")
    training = bundle.training_config
    default = preset.model.default_quality
    training["data"]["params"] = {**training["data"]["params"], "records": records, "edge_source": EDGE_SOURCE}
    training["model"]["default_quality"] = default
    # old edges code with a source's top-level tables: they become the default point's
    sources = [dataclasses.replace(s, default_quality=default, tables=s.quality(default).tables) for s in bundle.sources]
    info = dict(bundle.extra.get("data_info", {}))
    if "records" in info:  # the benchmark named them absolutely: relative to the repository, as a build does
        info["records"] = {split: [os.path.relpath(r, REPO) for r in names] for split, names in info["records"].items()}
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(trained, out)
    write_manifest(out, modality=bundle.modality, sources=sources, sample_rate=bundle.sample_rate,
                   decoder=bundle.decoder, training_config=training, evaluation=bundle.evaluation,
                   extra={**bundle.extra, "data_info": info, "edge_source": EDGE_SOURCE,
                          "trained_by": f"benchmarks/ecg.py (fixed split), shipped by {Path(__file__).name} --reuse"})
    figures = record_figures(out)
    return {"path": str(out), "bytes": sum(f.stat().st_size for f in out.iterdir()), "reused": str(trained), **figures}


def record_figures(path: Path) -> dict:
    """Measure every quality point on the held-out patients and on pydicom's ECG; record it in the manifest."""
    from ndsc.bundle import load_bundle
    from ndsc.sources.synthetic import STANDARD_LEADS
    from models.config import TrainConfig
    from training.ecg_eval import ecg_report, lossless_reference, record_windows
    from training.ecg_rd import MEAN_OF_LEADS, POOLED, RATE, WORST_LEAD, rate_on_curve
    from training.evaluate import dataset_for_bundle, evaluate_bundle
    from training.export import attach_evaluation
    from ecg import WAVELET_STEPS, measure_wavelet  # benchmarks/ecg.py

    bundle = load_bundle(path)
    p = TrainConfig.from_dict(bundle.training_config).data.params
    leads, g = list(p.get("leads") or STANDARD_LEADS), p["group_size"]
    held_out = dataset_for_bundle(bundle)
    wavelet = [measure_wavelet(held_out, held_out.test, leads, p["fs"], float(s)) for s in WAVELET_STEPS.split(",")]
    dicom = record_windows("pydicom", leads, g, p["fs"], p["samples"])
    points, pydicom_points, pydicom_reports = {}, {}, {}
    for quality in bundle.quality_names:
        r = ecg_report(evaluate_bundle(path, windows=held_out.test, quality=quality), held_out.test, leads, p["fs"])
        points[quality] = {k: r[k] for k in (RATE, POOLED, MEAN_OF_LEADS, WORST_LEAD)}
        points[quality]["per_lead"] = {x["lead"]: round(x["prdn_percent"], 3) for x in r["per_lead"]}
        points[quality]["wavelet_zstd_bits_at_same_mean_prdn"] = rate_on_curve(wavelet, r[MEAN_OF_LEADS], MEAN_OF_LEADS)
        d = pydicom_reports[quality] = ecg_report(evaluate_bundle(path, windows=dicom, quality=quality), dicom,
                                                  leads, p["fs"])
        pydicom_points[quality] = {k: d[k] for k in (RATE, POOLED, MEAN_OF_LEADS, WORST_LEAD, "payload_bytes")}
    default = bundle.default_quality
    pydicom = {**pydicom_reports[default], **lossless_reference(dicom, p["fs"]),
               "quality": default, "record": "pydicom.examples.waveform (not in training)",
               "points": pydicom_points}
    pydicom.pop("per_node", None)
    attach_evaluation(path, {"pydicom_record": pydicom,
                             "test_points": {"patients": held_out.info["patients"]["test"],
                                             "windows": int(len(held_out.test)), "points": points}})
    return {"default_quality": default, "test_points": points,
            "pydicom_default": {k: pydicom[k] for k in (RATE, POOLED, MEAN_OF_LEADS, WORST_LEAD)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append",
                        help="folder of WFDB records (repeatable; default ../shared/data/ecg and ecg-extra)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--steps", type=int, help="override the preset's training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a busy machine)")
    parser.add_argument("--reuse", type=Path,
                        help="ship this bundle, trained by benchmarks/ecg.py with the preset on the fixed split, "
                             "instead of training again")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    data = args.data or DEFAULT_DATA
    result = reuse(args.reuse.resolve(), data, args.out) if args.reuse else build(data, args.out, args.steps,
                                                                                   args.threads)
    print(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
