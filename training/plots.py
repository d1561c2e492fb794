"""Rate–distortion plots (matplotlib, headless)."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ndsc.bounds import all_bounds  # noqa: E402

BOUND_STYLES = {
    "separate": ("separate coding", "k--"),
    "no_binning": ("joint decoding, no binning", "b-."),
    "berger_tung": ("Berger–Tung", "g-"),
    "centralised": ("centralised", "r:"),
}


def plot_gaussian_rd(path: str | Path, rho: float, points: dict[str, Sequence[tuple[float, float]]],
                     d_range: tuple[float, float] = (0.003, 0.5)) -> Path:
    """Sum rate (bits/pair) vs per-source MSE: learned points over the four bounds.

    ``points`` maps a label to (distortion, sum rate from bytes) pairs.
    """
    ds = np.geomspace(*d_range, 80)
    many = len(points) > 6  # a long legend goes beside the axes, where it hides no curve
    fig, ax = plt.subplots(figsize=(9.6 if many else 6.4, 5.0 if many else 4.4))
    curves = {k: [all_bounds(rho, d)[k] for d in ds] for k in BOUND_STYLES}
    for key, (label, style) in BOUND_STYLES.items():
        ax.plot(ds, curves[key], style, label=label)
    markers = itertools.cycle("osD^v<>ph*Xd")  # more curves than markers: reuse them
    for label, pts in points.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=next(markers), linestyle="-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("MSE per source (unit-variance sources)")
    ax.set_ylabel("sum rate, bits per sample pair (real bytes)")
    ax.set_title(f"Two jointly Gaussian sources, ρ = {rho}")
    ax.grid(True, which="both", alpha=0.3)
    if many:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
