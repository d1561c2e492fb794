#!/usr/bin/env python
"""Train the shipped real-ECG bundle ``ndsc/bundles/ecg-12lead`` (4 nodes × 3 leads, 500 Hz).

Usage::

    python scripts/build_ecg_bundle.py                       # ../shared/data/ecg, preset ecg-12lead
    python scripts/build_ecg_bundle.py --steps 600 --out /tmp/ecg-bundle      # one torch thread by default

Trains preset ``ecg-12lead`` on the 12-lead PhysioNet records (≥ 250 Hz) in
``../shared/data/ecg`` (split by patient; the record lists of each split go into the
manifest), exports and evaluates it with real bits on the held-out patients, then on the
ECG that ships with pydicom (a patient the model never saw, and what the demo replays).
The data are only read here, never copied into the repository.
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

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ecg"
DEFAULT_OUT = REPO / "ndsc" / "bundles" / "ecg-12lead"


def build(data: Path, out: Path, steps: int | None, threads: int) -> dict:
    import torch

    from ndsc.sources.synthetic import STANDARD_LEADS
    from training.ecg_eval import ecg_report, lossless_reference, record_windows
    from training.evaluate import evaluate_bundle, summary
    from training.export import attach_evaluation
    from training.pipeline import train_and_export
    from training.presets import get_preset

    torch.set_num_threads(threads)
    cfg = get_preset("ecg-12lead").replace(threads=threads)
    if steps:
        cfg.steps = steps
    # Relative to the repository (../shared/data/ecg), so the manifest names no home folder.
    records = os.path.relpath(data, REPO)
    cfg.data.params = {**cfg.data.params, "records": [records], "edge_source": "dicom:pydicom#loop=1"}
    t0 = time.time()
    path, report = train_and_export(cfg, out)
    p = cfg.data.params
    leads, g = list(p.get("leads") or STANDARD_LEADS), p["group_size"]
    windows = record_windows("pydicom", leads, g, p["fs"], p["samples"])
    result = evaluate_bundle(path, windows=windows)
    pydicom = {**ecg_report(result, windows, leads, p["fs"]), **lossless_reference(windows, p["fs"]),
               "record": "pydicom.examples.waveform (not in training)", "codec": summary(result)["sources"]}
    attach_evaluation(path, {"pydicom_record": pydicom})
    size = sum(f.stat().st_size for f in path.iterdir())
    return {"path": str(path), "bytes": size, "seconds": round(time.time() - t0, 1),
            "test_bits_per_sample_per_lead": report["bits_per_sample_mean"],
            "test_prdn_percent": report["overall_prdn_percent"],
            "pydicom_bits_per_sample_per_lead": pydicom["bits_per_sample_per_lead"],
            "pydicom_prdn_percent": pydicom["prdn_percent"], "pydicom_flac_bits_per_sample": pydicom["flac_bits_per_sample"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of WFDB records (../shared/data/ecg)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--steps", type=int, help="override the preset's training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a busy machine)")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    print(json.dumps(build(args.data, args.out, args.steps, args.threads), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
