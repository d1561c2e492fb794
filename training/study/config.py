"""The study config (YAML): data sets, their folds, and the methods swept on each."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class MethodSpec:
    """One curve: a registered baseline with fixed params and a grid swept point by point."""

    label: str
    baseline: str
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    #: explicit points (each a dict of params), used instead of / after the grid's product
    points_list: list[dict[str, Any]] = field(default_factory=list)
    #: ablation group for the report's MI statement (e.g. "beta", "estimator", "optimisation")
    group: str | None = None
    #: test folds this method runs on (default: all of the data set's folds)
    folds: list[int] | None = None

    def points(self) -> list[dict[str, Any]]:
        """Every point's params: the grid's product (fixed params overridden), then ``points_list``."""
        keys = list(self.grid)
        out = [{**self.params, **dict(zip(keys, values))} for values in itertools.product(*(self.grid[k] for k in keys))]
        if self.points_list:
            out = [p for p in out if self.grid] + [{**self.params, **p} for p in self.points_list]
        return out

    def varied(self) -> list[str]:
        """Param names that differ between points (what a table shows per point)."""
        keys = list(self.grid) + [k for p in self.points_list for k in p]
        return list(dict.fromkeys(keys))


@dataclass
class DatasetSpec:
    """A data set and how it is split.

    ``folds``: list of CV test folds (each a run) out of ``n_folds``; empty: one 80/10/10 run.
    ``train``: the base TrainConfig dict neural methods start from (their ``data`` is this data set).
    ``anchor``: label of the method BD-rates are measured against (separate coding).
    ``matched``: distortions at which rates are compared (units of the data set's distortion).
    """

    name: str
    data: dict[str, Any]
    methods: list[MethodSpec]
    folds: list[int] = field(default_factory=list)
    n_folds: int = 5
    train: dict[str, Any] = field(default_factory=dict)
    anchor: str = "separate"
    matched: list[float] = field(default_factory=list)
    max_test_windows: int | None = None
    notes: str = ""

    @property
    def modality(self) -> str:
        kind = self.data.get("kind", "gaussian")
        return "gaussian" if kind == "gaussian" else "stereo" if kind == "stereo" else "ecg"


@dataclass
class StudyConfig:
    name: str
    datasets: list[DatasetSpec]
    out: str = "docs/report"
    cache: str = ".ndsc_cache/study"
    threads: int = 1  # torch threads per worker
    workers: int = 1  # runs computed in parallel processes
    #: torch device of the networks' training (auto | cpu | cuda | cuda:N; models/device.py). Not part of a
    #: run's cache key: a run cached on one device is reused on another; each run records where it trained.
    device: str = "auto"
    path: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> "StudyConfig":
        raw = yaml.safe_load(Path(path).read_text())
        cfg = cls.from_dict(raw)
        cfg.path = str(path)
        return cfg

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "StudyConfig":
        raw = dict(raw)
        datasets = []
        for d in raw.pop("datasets"):
            d = dict(d)
            methods = [MethodSpec(**{("points_list" if k == "points" else k): v for k, v in m.items()})
                       for m in d.pop("methods")]
            labels = [m.label for m in methods]
            if len(set(labels)) != len(labels):
                raise ValueError(f"data set {d.get('name')}: method labels must be unique, got {labels}")
            datasets.append(DatasetSpec(methods=methods, **d))
        return cls(datasets=datasets, **raw)
