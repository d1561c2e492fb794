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
    #: where a network trains (the study's ``device``); left out of :meth:`key`, so a cached run is reused
    #: whatever device computed it (the run records the device it trained on in ``fit.device``)
    device: str = "auto"

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
                    runs.append(Run(ds, method, point, fold, cfg.device))
    return runs


def execute(run: Run) -> dict[str, Any]:
    """Fit the run's baseline on its training split and measure it on the test split."""
    data = fold_dataset(run.dataset.data, run.fold, run.dataset.n_folds)
    test = data.test if run.dataset.max_test_windows is None else data.test[: run.dataset.max_test_windows]
    params = run.baseline_params()
    if uses_train_config(run.method.baseline):
        params["device"] = run.device
    baseline = build_baseline(run.method.baseline, **params)
    start = time.perf_counter()
    fit = baseline.fit(data)
    fit_seconds = time.perf_counter() - start
    figures = measure(baseline, test, run.dataset.modality)
    analysis = baseline.analyse(test)
    return {"fit": {**fit, "fit_seconds": fit_seconds}, "metrics": figures, "analysis": analysis,
            "decoding": baseline.decoding, "split": {"fold": run.fold, "train": len(data.train),
                                                     "val": len(data.val), "test": len(test),
                                                     "window_shape": list(data.window_shape)}}


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def run_study(cfg: StudyConfig, only: list[str] | None = None, force: bool = False,
              executor: Callable[[Run], dict[str, Any]] = execute, workers: int | None = None) -> list[dict[str, Any]]:
    """Run (or read from cache) every run; returns one record per run, in config order.

    ``workers`` > 1 runs missing runs in that many processes (each with ``cfg.threads`` torch
    threads); results are written to the cache by this process as they arrive.
    """
    workers = cfg.workers if workers is None else workers
    if cfg.threads:
        _init_worker(cfg.threads)
    cache = Path(cfg.cache)
    cache.mkdir(parents=True, exist_ok=True)
    runs = expand(cfg, only)
    records: list[dict[str, Any] | None] = [None] * len(runs)
    todo = []
    for k, run in enumerate(runs):
        path = cache / f"{run.key()}.json"
        if path.exists() and not force:
            records[k] = {**json.loads(path.read_text()), **_head(run), "cached": True}
        else:
            todo.append(k)
    # Two methods may name the same run (e.g. one configuration in two ablation groups): compute it once.
    first: dict[str, int] = {}
    for k in todo:
        first.setdefault(runs[k].key(), k)
    unique = list(first.values())
    if workers > 1 and len(unique) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg.threads,)) as pool:
            futures = {k: pool.submit(_timed, executor, runs[k]) for k in unique}
            for done, k in enumerate(unique):
                records[k] = _store(runs[k], cache, futures[k], done, len(unique))
    else:
        for done, k in enumerate(unique):
            records[k] = _store(runs[k], cache, None, done, len(unique), executor)
    for k in todo:
        if records[k] is None:  # a duplicate of a run computed above: same result, its own labels
            source = records[first[runs[k].key()]]
            records[k] = {**source, **_head(runs[k])}
    return [r for r in records if r is not None]


def _head(run: Run) -> dict[str, Any]:
    return {"dataset": run.dataset.name, "method": run.method.label, "baseline": run.method.baseline,
            "group": run.method.group,
            "point": {k: run.point[k] for k in run.method.varied() if k in run.point},
            "params": _jsonable(run.point), "fold": run.fold, "key": run.key()}


def _timed(executor: Callable[[Run], dict[str, Any]], run: Run) -> tuple[dict[str, Any], float, float]:
    """(result, wall seconds, CPU seconds of this process): CPU time is what a loaded machine cannot inflate."""
    start, cpu = time.perf_counter(), time.process_time()
    result = executor(run)
    return result, time.perf_counter() - start, time.process_time() - cpu


def _store(run: Run, cache: Path, future, done: int, total: int, executor=None) -> dict[str, Any]:
    """Wait for (or compute) one run; cache it atomically unless it failed."""
    head = _head(run)
    try:
        result, seconds, cpu = future.result() if future is not None else _timed(executor, run)
    except Exception as exc:  # a failed run is reported, never cached
        log.error("run %s %s %s fold %s failed: %s", run.dataset.name, run.method.label, head["point"], run.fold, exc)
        return {**head, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    record = {**head, **_jsonable(result), "wall_seconds": seconds, "cpu_seconds": cpu}
    path = cache / f"{head['key']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)  # atomic: a killed study never leaves half a result
    log.info("[%d/%d] %s | %s %s fold %s: rate %.4f mse %.5g (%.1fs)", done + 1, total, run.dataset.name,
             run.method.label, head["point"], run.fold, record["metrics"]["rate_sum"], record["metrics"]["mse"],
             seconds)
    return {**record, "cached": False}


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
