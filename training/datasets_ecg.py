"""The ``ecg`` data set kind: real multi-lead records, split by patient, cut into windows.

``DataConfig(kind="ecg", params={...})`` with params:

* ``records``: a directory (searched for WFDB headers and ``.dcm``), a record path, ``"pydicom"``
  (the 12-lead ECG pydicom ships), or a list of these. Default ``["pydicom"]``.
* ``leads`` (12 standard), ``group_size`` (leads per node: 1, 3, 6 …), ``fs`` (Hz, default 500),
  ``samples`` (window T, default 1024), ``hop`` (training-window hop, default T/2; val/test
  windows never overlap), ``min_fs`` (records recorded slower are skipped, default 250 Hz),
  ``max_seconds`` (only the first seconds of each record are used, default 30, so one long
  recording does not outweigh the 10 s records of forty other patients; None: all),
  ``edge_source`` (the replay spec recorded in the bundle; default: the first test record).

Splits are by **patient** (PTB-XL ``patient_id`` from ``ptbxl_database*.csv``, the PTB
``patientNNN`` folder, the DICOM PatientID; otherwise each record is its own patient), and
byte-identical recordings are tied to one patient. PTB-XL records follow ``strat_fold``
(folds 1–8 / 9 / 10 for 80/10/10; fold pairs {2k+1, 2k+2} for 5-fold CV), the rest go
through :func:`training.data.group_split`. With fewer than three patients (e.g. the single
pydicom record) there is no patient split: the recording is split in time, 80/10/10, and
``info["split"]`` says so.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ndsc.sources.ecg import PYDICOM_RECORD, EcgRecord, find_records, read_record
from ndsc.sources.synthetic import STANDARD_LEADS
from models.config import DataConfig
from training.data import JointDataset, group_split, register_dataset

DEFAULTS: dict[str, Any] = {"records": [PYDICOM_RECORD], "leads": list(STANDARD_LEADS), "group_size": 1,
                            "fs": 500.0, "samples": 1024, "hop": None, "min_fs": 250.0, "max_seconds": 30.0,
                            "edge_source": None}


def expand_records(records: str | Sequence[str]) -> tuple[list[str], list[Path]]:
    """Record paths named by ``records`` (dirs expanded) and the directories searched."""
    items = [records] if isinstance(records, str) else list(records)
    paths, roots = [], []
    for item in items:
        if item != PYDICOM_RECORD and Path(item).is_dir():
            roots.append(Path(item))
            paths += find_records(item)
        else:
            paths.append(str(item))
    return paths, roots


def ptbxl_table(roots: Sequence[Path]) -> dict[int, dict[str, str]]:
    """``ecg_id`` → row of every ``ptbxl_database*.csv`` under ``roots``."""
    table: dict[int, dict[str, str]] = {}
    for root in roots:
        for csv_path in sorted(root.rglob("ptbxl_database*.csv")):
            with open(csv_path, newline="") as f:
                for row in csv.DictReader(f):
                    table[int(float(row["ecg_id"]))] = row
    return table


def ptbxl_ecg_id(name: str) -> int | None:
    """PTB-XL ecg_id of a record name: ``06000_hr``, ``00001_lr`` or Challenge-2021 ``HR06000``."""
    m = re.fullmatch(r"(\d{5})_(?:lr|hr)", name) or re.fullmatch(r"HR(\d{5})", name)
    return int(m.group(1)) if m else None


def load_records(params: dict[str, Any]) -> tuple[list[EcgRecord], list[dict[str, Any]]]:
    """Read, filter, narrow and resample the records; returns them with per-record facts.

    Records are kept when they have every requested lead and ``fs ≥ min_fs``; each fact
    dict has ``name``, ``path``, ``patient`` (the split group) and ``strat_fold`` (or None).
    """
    p = {**DEFAULTS, **params}
    paths, roots = expand_records(p["records"])
    table = ptbxl_table(roots)
    records, facts = [], []
    by_hash: dict[str, str] = {}
    for path in paths:
        rec = read_record(path)
        if rec.fs < float(p["min_fs"]) or not set(p["leads"]) <= set(rec.leads):
            continue
        rec = rec.select(p["leads"]).resample(float(p["fs"]))
        if p["max_seconds"]:
            rec = EcgRecord(rec.name, rec.signal[:, :int(float(p["max_seconds"]) * rec.fs)], rec.fs, rec.leads,
                            rec.patient, rec.path, rec.meta)
        ecg_id = ptbxl_ecg_id(rec.name)
        row = table.get(ecg_id) if ecg_id is not None else None
        if row is not None and row.get("patient_id"):
            patient = f"ptbxl:{int(float(row['patient_id']))}"
        elif rec.patient:
            patient = f"{Path(rec.path).parent.name}:{rec.patient}"
        else:
            patient = f"record:{rec.path}"
        # The same recording filed twice (Georgia E07509/E07510) must stay on one side of a split.
        patient = by_hash.setdefault(rec.content_hash(), patient)
        records.append(rec)
        facts.append({"name": rec.name, "path": rec.path, "patient": patient,
                      "strat_fold": int(row["strat_fold"]) if row is not None and row.get("strat_fold") else None})
    if not records:
        raise ValueError(f"no record with leads {p['leads']} at ≥ {p['min_fs']} Hz in {p['records']}")
    return records, facts


def split_patients(facts: list[dict[str, Any]], seed: int = 0, fold: int | None = None) -> dict[str, str]:
    """Patient id → ``"train" | "val" | "test"``; PTB-XL patients follow ``strat_fold``."""
    side: dict[str, str] = {}
    for f in facts:
        sf = f["strat_fold"]
        if sf is None or f["patient"] in side:
            continue
        if fold is None:
            side[f["patient"]] = "test" if sf == 10 else "val" if sf == 9 else "train"
        else:
            pair = (sf - 1) // 2  # strat folds {2k+1, 2k+2} form CV fold k
            side[f["patient"]] = "test" if pair == fold else "val" if pair == (fold + 1) % 5 else "train"
    rest = sorted({f["patient"] for f in facts} - set(side))
    if rest:
        train, val, test = group_split(rest, seed=seed, fold=fold)
        side.update({g: "train" for g in train} | {g: "val" for g in val} | {g: "test" for g in test})
    return side


def _stack(records: list[EcgRecord], groups: list[tuple[int, ...]], samples: int, hop: int) -> np.ndarray:
    """Windows of the records as (n, N, C, T), dropping windows with missing samples."""
    parts = [r.windows(samples, hop) for r in records] if records else []
    w = np.concatenate(parts) if parts else np.zeros((0, len(groups) * len(groups[0]), samples), np.float32)
    w = w[np.isfinite(w).all(axis=(1, 2))]
    return np.stack([w[:, list(g)] for g in groups], axis=1).astype(np.float32)


@register_dataset("ecg")
def ecg_dataset(cfg: DataConfig) -> JointDataset:
    """Real ECG windows (n, N, C, T) in mV, split by patient (see module docstring)."""
    p = {**DEFAULTS, **cfg.params}
    leads, g = [str(l) for l in p["leads"]], int(p["group_size"])
    if len(leads) % g:
        raise ValueError(f"{len(leads)} leads do not split into groups of {g}")
    groups = [tuple(range(i, i + g)) for i in range(0, len(leads), g)]
    samples = int(p["samples"])
    hop = int(p["hop"] or samples // 2)
    records, facts = load_records(p)
    patients = sorted({f["patient"] for f in facts})
    if len(patients) >= 3:
        side = split_patients(facts, seed=cfg.split_seed, fold=cfg.fold)
        parts = {s: [r for r, f in zip(records, facts) if side[f["patient"]] == s] for s in ("train", "val", "test")}
        names = {s: [f["path"] for f in facts if side[f["patient"]] == s] for s in ("train", "val", "test")}
        split = "patient" if cfg.fold is None else f"patient, fold {cfg.fold} of 5"
    else:
        # One or two patients: no patient split exists, so split every recording in time.
        parts = {"train": [], "val": [], "test": []}
        for r in records:
            n = r.signal.shape[1]
            held = max(int(0.1 * n), samples)  # val and test each get at least one window
            a, b = n - 2 * held, n - held
            for s, (lo, hi) in zip(("train", "val", "test"), ((0, a), (a, b), (b, n))):
                parts[s].append(EcgRecord(r.name, r.signal[:, lo:hi], r.fs, r.leads, r.patient, r.path))
        names = {s: [f["path"] for f in facts] for s in ("train", "val", "test")}
        split = "time (fewer than 3 patients: the last 10 % (≥ one window) of each record is test, the 10 % before it val)"
    train = _stack(parts["train"], groups, samples, hop)
    val = _stack(parts["val"], groups, samples, samples)
    test = _stack(parts["test"], groups, samples, samples)
    if min(len(train), len(test)) == 0:
        raise ValueError(f"ECG split left no windows of {samples} samples (train {len(train)}, test {len(test)})")
    if p["edge_source"]:
        edge_source = str(p["edge_source"])
    else:
        first = names["test"][0]
        edge_source = "dicom:pydicom" if first == PYDICOM_RECORD else f"wfdb:{first}"
    source_names = ["+".join(leads[i] for i in grp) for grp in groups]
    return JointDataset(
        train=train, val=val, test=test, modality="ecg", source_names=source_names,
        channel_names=[[leads[i] for i in grp] for grp in groups], sample_rate=float(p["fs"]),
        edge_source=edge_source,
        info={"units": "mV", "leads": leads, "group_size": g, "split": split,
              "records": names, "patients": {s: len({f['patient'] for f in facts if f['path'] in names[s]})
                                             for s in names}},
    )
