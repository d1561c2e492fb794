"""Sweep driver: every (data set, fold, method, grid point) is one run, cached as JSON.

A run's key is the sha256 of everything that defines it (data config, fold, baseline name,
its params, the base training config when the baseline trains a network, and
:data:`RESULT_VERSION`), so rerunning a study resumes: cached runs are read back,
missing ones are computed. Failed runs are reported and never cached.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from training.baselines import build_baseline
from training.study.config import DatasetSpec, MethodSpec, StudyConfig
from training.study.measure import measure
from training.study.splits import fold_dataset

log = logging.getLogger(__name__)

#: bump when the meaning of a cached result changes
RESULT_VERSION = 1


@dataclass(frozen=True)
class Run:
    dataset: DatasetSpec
    method: MethodSpec
    point: dict[str, Any]
    fold: int | None

    def baseline_params(self) -> dict[str, Any]:
        params = dict(self.point)
        if self.dataset.train or uses_train_config(self.method.baseline):
            params.setdefault("train", {**self.dataset.train, "data": self.dataset.data})
        return params

    def key(self) -> str:
        params = self.baseline_params()
        if not uses_train_config(self.method.baseline):
            params.pop("train", None)
        blob = json.dumps({"v": RESULT_VERSION, "impl": baseline_version(self.method.baseline), "data": self.dataset.data, "fold": self.fold,
                           "n_folds": self.dataset.n_folds, "max_test": self.dataset.max_test_windows,
                           "baseline": self.method.baseline, "params": params}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def baseline_version(name: str) -> int:
    """A baseline's implementation version (class attribute ``version``): bumping it invalidates its cache."""
    return int(getattr(type(build_baseline(name)), "version", 1))


def uses_train_config(name: str) -> bool:
    """Whether a baseline trains a network from the data set's base TrainConfig."""
    return bool(getattr(type(build_baseline(name)), "uses_train_config", False))


def expand(cfg: StudyConfig, only: list[str] | None = None) -> list[Run]:
    """All runs of the study (optionally only the named data sets)."""
    runs = []
    for ds in cfg.datasets:
        if only and ds.name not in only:
            continue
        for fold in (ds.folds or [None]):
            for method in ds.methods:
                if fold is not None and method.folds is not None and fold not in method.folds:
                    continue
                for point in method.points():
                    runs.append(Run(ds, method, point, fold))
    return runs


def execute(run: Run) -> dict[str, Any]:
    """Fit the run's baseline on its training split and measure it on the test split."""
    data = fold_dataset(run.dataset.data, run.fold, run.dataset.n_folds)
    test = data.test if run.dataset.max_test_windows is None else data.test[: run.dataset.max_test_windows]
    baseline = build_baseline(run.method.baseline, **run.baseline_params())
    start = time.perf_counter()
    fit = baseline.fit(data)
    fit_seconds = time.perf_counter() - start
    figures = measure(baseline, test, run.dataset.modality)
    analysis = baseline.analyse(test)
    return {"fit": {**fit, "fit_seconds": fit_seconds}, "metrics": figures, "analysis": analysis,
            "decoding": baseline.decoding, "split": {"fold": run.fold, "train": len(data.train),
                                                     "val": len(data.val), "test": len(test),
                                                     "window_shape": list(data.window_shape)}}


def run_study(cfg: StudyConfig, only: list[str] | None = None, force: bool = False,
              executor: Callable[[Run], dict[str, Any]] = execute) -> list[dict[str, Any]]:
    """Run (or read from cache) every run; returns one record per run."""
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    cache = Path(cfg.cache)
    cache.mkdir(parents=True, exist_ok=True)
    runs = expand(cfg, only)
    records = []
    for k, run in enumerate(runs):
        key = run.key()
        path = cache / f"{key}.json"
        head = {"dataset": run.dataset.name, "method": run.method.label, "baseline": run.method.baseline,
                "group": run.method.group, "point": {k2: run.point[k2] for k2 in run.method.varied() if k2 in run.point},
                "params": _jsonable(run.point), "fold": run.fold, "key": key}
        if path.exists() and not force:
            records.append({**json.loads(path.read_text()), **head, "cached": True})
            continue
        start = time.perf_counter()
        try:
            result = executor(run)
        except Exception as exc:  # a failed run is reported, never cached
            log.error("run %s %s %s fold %s failed: %s", run.dataset.name, run.method.label, head["point"],
                      run.fold, exc)
            records.append({**head, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
            continue
        record = {**head, **_jsonable(result), "wall_seconds": time.perf_counter() - start}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)  # atomic: a killed study never leaves half a result
        log.info("[%d/%d] %s | %s %s fold %s: rate %.4f mse %.5g (%.1fs)", k + 1, len(runs), run.dataset.name,
                 run.method.label, head["point"], run.fold, record["metrics"]["rate_sum"], record["metrics"]["mse"],
                 record["wall_seconds"])
        records.append({**record, "cached": False})
    return records


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj
