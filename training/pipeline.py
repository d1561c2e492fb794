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

    Returns the bundle path and the evaluation summary (real bits from the coder). With
    ``cfg.binning.syndrome`` set, the bundle is then made format 3 (those sources syndrome-coded,
    ``training.syndrome_export``) and the summary's ``binning`` holds the fitted tables and the
    test split coded as served (``training.binning.measure_offline``: every feedback bit
    counted); the other figures stay those of direct coding by the same encoders.
    """
    if cfg.binning.syndrome:
        from training.syndrome_export import check_binning

        check_binning(cfg)  # a config that cannot become a bundle fails before training, not after
    result = train(cfg, checkpoint=checkpoint)
    path = export_bundle(result.model, result.dataset, out_dir)
    if cfg.model.refiner_hidden:
        from training.datasets_stereo import full_pairs
        from training.view_fusion import FusionConfig, train_view_fusion

        # after the codec, with it frozen: inputs are the training scenes' real decodes (training/view_fusion.py)
        fusion = FusionConfig(hidden=cfg.model.refiner_hidden, blocks=cfg.model.refiner_blocks,
                              coarse_blocks=cfg.model.refiner_coarse_blocks, steps=cfg.refiner_steps, seed=cfg.seed)
        train_view_fusion(path, full_pairs(cfg.data, "train"), fusion)
    report = summary(evaluate_bundle(path, windows=result.dataset.test))
    report["training_estimate_bits_per_sample_sum"] = training_estimate(result.model, result.dataset.test)
    report["train_seconds"] = result.seconds  # the codec's; the fusion's are in evaluation["view_fusion"]
    report["train_device"] = result.device
    if cfg.binning.syndrome:
        report["binning"] = _binning(path, result.dataset, cfg)
    # The figures are hashed into the manifest, so attaching them gives the bundle its final id.
    report["bundle_id"] = attach_evaluation(path, {"test": {k: v for k, v in report.items() if k != "bundle_id"}})
    return path, report


def _binning(path: Path, dataset, cfg: TrainConfig) -> dict[str, Any]:
    """Freeze the syndrome sources into the bundle at ``path``; their fit and the test split as served."""
    from training.binning import measure_offline
    from training.syndrome_export import check_binning, make_syndrome_bundle

    check_binning(cfg, dataset.n_sources)
    fitted = make_syndrome_bundle(path, dataset, cfg.binning)
    served = measure_offline(path, dataset.test)
    served.pop("x_hat")
    rows = served.pop("windows")
    return summary({"sources": fitted, **served, "fallbacks": sum(sum(r["fallback"]) for r in rows),
                    "bp_iterations_per_window": sum(r["bp_iterations"] for r in rows) / max(len(rows), 1)})
