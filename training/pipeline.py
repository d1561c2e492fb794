"""Train → export → evaluate through the real path → record figures in the bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from models.config import TrainConfig
from training.evaluate import evaluate_bundle, summary, training_estimate
from training.export import attach_evaluation, export_bundle
from training.train import train


def train_and_export(cfg: TrainConfig, out_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Train ``cfg``, export a bundle to ``out_dir`` and attach its test-split figures.

    Returns the bundle path and the evaluation summary (real bits from the coder).
    """
    result = train(cfg, checkpoint=checkpoint)
    path = export_bundle(result.model, result.dataset, out_dir)
    report = summary(evaluate_bundle(path, windows=result.dataset.test))
    report["training_estimate_bits_per_sample_sum"] = training_estimate(result.model, result.dataset.test)
    report["train_seconds"] = result.seconds
    report["train_device"] = result.device
    # The figures are hashed into the manifest, so attaching them gives the bundle its final id.
    report["bundle_id"] = attach_evaluation(path, {"test": {k: v for k, v in report.items() if k != "bundle_id"}})
    return path, report
