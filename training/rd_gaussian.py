"""A short R–D sweep on two Gaussian sources, plotted against the theory bounds."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ndsc.bounds import all_bounds
from training.pipeline import train_and_export
from training.plots import plot_gaussian_rd
from training.presets import get_preset


def run_rd_gaussian(out_dir: str | Path, rho: float = 0.9, lambdas: Sequence[float] = (0.005, 0.02, 0.08),
                    steps: int = 600, beta_mi: float = 0.0) -> Path:
    """Train one bundle per λ, measure real bits on the test split, write results.json and rd.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for lmbda in lambdas:
        cfg = get_preset("gaussian-quick").replace(lmbda=lmbda, steps=steps, beta_mi=beta_mi)
        cfg.data.params["rho"] = rho
        path, report = train_and_export(cfg, out / f"bundle_lambda_{lmbda}")
        d = report["mse_mean"]
        rows.append({"lambda": lmbda, "beta_mi": beta_mi, "mse_per_source": d,
                     "sum_rate_bits_per_pair": report["bits_per_sample_sum"],
                     "table_entropy_bits_per_pair": report["estimated_bits_per_sample_sum"],
                     "bounds": all_bounds(rho, d) if 0 < d < 1 else None, "bundle": str(path)})
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    points = {"learned (real bytes)": [(r["mse_per_source"], r["sum_rate_bits_per_pair"]) for r in rows],
              "learned (table entropy)": [(r["mse_per_source"], r["table_entropy_bits_per_pair"]) for r in rows]}
    return plot_gaussian_rd(out / "rd.png", rho, points)
