"""Data sets per fold: 80/10/10 or the k-th of 5 folds, built once per process."""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from models.config import DataConfig
from training.data import JointDataset, build_dataset

#: kinds whose windows are i.i.d. draws: folds split the pool of windows by index.
SYNTHETIC = ("gaussian", "ecg-synth")


def fold_dataset(data: dict, fold: int | None, n_folds: int = 5) -> JointDataset:
    """The data set of ``data`` (a DataConfig dict) with fold ``fold`` as the test split.

    Real data sets split by patient/scene themselves (``DataConfig.fold``); synthetic ones
    are re-split here by window index: window k is in fold k mod ``n_folds``, the next fold
    is validation.
    """
    return _cached(json.dumps(data, sort_keys=True), fold, n_folds)


@lru_cache(maxsize=2)
def _cached(data_json: str, fold: int | None, n_folds: int) -> JointDataset:
    cfg = DataConfig(**json.loads(data_json))
    if fold is None or cfg.kind not in SYNTHETIC:
        cfg.fold = fold
        return build_dataset(cfg)
    base = build_dataset(cfg)
    pool = np.concatenate([base.train, base.val, base.test])
    which = np.arange(len(pool)) % n_folds
    test, val = which == fold, which == (fold + 1) % n_folds
    train = ~(test | val)
    return JointDataset(train=pool[train], val=pool[val], test=pool[test], modality=base.modality,
                        source_names=base.source_names, channel_names=base.channel_names,
                        sample_rate=base.sample_rate, edge_source=base.edge_source,
                        info={**base.info, "fold": fold, "n_folds": n_folds})
