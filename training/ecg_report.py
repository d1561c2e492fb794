"""``docs/report/ecg_rd.md`` from a run of ``benchmarks/ecg.py --report DIR``: plots and tables.

Figures: the R–D curves of the first fold (distributed, separate, wavelet-zstd, dct-zstd, FLAC),
per-lead PRDN bars of the default quality point beside wavelet-zstd at the same mean PRDN, and
the error spectrum of the default point against the signal's spectrum.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.ecg_rd import MEAN_OF_LEADS, POOLED, RATE, WORST_LEAD, frontier


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def default_point_figures(bundle_path: Path, windows: np.ndarray, leads: list[str], fs: float,
                          out: Path) -> dict[str, Any]:
    """Per-lead PRDN bars and the error spectrum of the bundle's default point; returns their figures."""
    from scipy.signal import welch

    from ndsc.bundle import load_bundle
    from training.ecg_eval import ecg_report
    from training.evaluate import evaluate_bundle

    out.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(bundle_path)
    result = evaluate_bundle(bundle_path, windows=windows)
    report = ecg_report(result, windows, leads, fs)
    n, s, c, t = windows.shape
    x = windows.reshape(n, s * c, t).astype(np.float64)
    err = result["x_hat"].reshape(n, s * c, t) - x
    freqs, p_sig = welch(x - x.mean(axis=-1, keepdims=True), fs=fs, nperseg=256, axis=-1)
    _, p_err = welch(err, fs=fs, nperseg=256, axis=-1)
    p_sig, p_err = p_sig.mean(axis=(0, 1)), p_err.mean(axis=(0, 1))

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(range(len(leads)), [p["prdn_percent"] for p in report["per_lead"]], color="tab:blue")
    ax.axhline(9.0, color="k", ls="--", lw=0.8, label="9 % (no lead above)")
    ax.set_xticks(range(len(leads)), leads)
    ax.set_ylabel("PRDN %")
    ax.set_title(f"per-lead PRDN, default point q={bundle.default_quality} "
                 f"({report[RATE]:.3f} bits/sample/lead)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ecg_per_lead.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.semilogy(freqs, p_sig, label="signal (mean removed)")
    ax.semilogy(freqs, p_err, label="reconstruction error")
    ax.set_xlabel("Hz")
    ax.set_ylabel("mV² / Hz")
    ax.set_title(f"error spectrum, default point q={bundle.default_quality}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ecg_error_spectrum.png", dpi=120)
    plt.close(fig)
    above = freqs > 60
    return {"quality": bundle.default_quality, "per_lead": report["per_lead"], RATE: report[RATE],
            POOLED: report[POOLED], MEAN_OF_LEADS: report[MEAN_OF_LEADS], WORST_LEAD: report[WORST_LEAD],
            "error_over_signal_above_60hz": float(p_err[above].sum() / max(p_sig[above].sum(), 1e-30))}


def plot_rd(path: Path, result: dict[str, Any]) -> None:
    """R–D curves (mean-of-leads PRDN vs bits/sample/lead) of one fold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    curves = [(f"{k} (ndsc)", pts, "o-") for k, pts in result["rows"].items()]
    curves += [("wavelet-zstd", result["wavelet_zstd"], "s--"), ("dct-zstd", result["dct_zstd"], "^:")]
    for label, pts, style in curves:
        pts = [p for p in pts if p[MEAN_OF_LEADS] < 60]
        front = frontier(pts, MEAN_OF_LEADS)
        ax.plot([p[RATE] for p in front], [p[MEAN_OF_LEADS] for p in front], style, label=label)
    flac = result["lossless"]["flac_bits_per_sample"]
    ax.axvline(flac, color="gray", lw=0.8, ls="-.", label=f"FLAC lossless ({flac:.2f})")
    ax.axhspan(2, 12, color="green", alpha=0.06, label="BD-rate range 2–12 %")
    ax.plot([1.0], [5.0], "k*", markersize=11, label="clinical target (≤ 1.0, 5 %)")
    ax.set_xscale("log")
    # plain numbers at a few rates: matplotlib's default labels every minor tick of a short log axis
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks([t for t in (0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10) if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bits / sample / lead (real bytes)")
    ax.set_ylabel("PRDN %, mean of leads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, results: list[dict[str, Any]], summary: dict[str, Any], command: str) -> Path:
    """Write ``out/ecg_rd.md`` (and ``ecg_rd.png``) from the benchmark's results."""
    out.mkdir(parents=True, exist_ok=True)
    first = results[0]
    plot_rd(out / "ecg_rd.png", first)
    lines = ["# ECG rate–distortion: ndsc vs wavelet-zstd on unseen patients", "",
             f"Made by `{command}` (every figure below; rate = payload bytes × 8).", "",
             "## Summary", ""]
    lines += [f"- {k}: **{v}**" for k, v in summary["lines"].items()]
    lines += ["", "## Per fold (mean-of-leads PRDN)", "",
              "| fold | test patients | windows | BD-rate vs wavelet (the PRDN both cover, within 2–12 %) | points above wavelet | clinical point "
              "(bits, mean %, worst lead %) | joint vs separate saving per point |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        v = r["verdict"]
        bdv = v.get("bd_vs_wavelet", {})
        bd = bdv.get("saving_percent", float("nan"))
        c = v.get("clinical")
        clinical = f"q{c['quality']}: {c[RATE]:.3f}, {c[MEAN_OF_LEADS]:.2f}, {c[WORST_LEAD]:.2f}" if c else "none"
        joint = ", ".join(f"{s['saving_percent']:+.1f} % @ {s['prdn_percent']:.1f}"
                          for s in v.get("joint_vs_separate", [])) or "no common range"
        lines.append(f"| {r['fold']} | {r['patients']} | {r['windows']} | {-bd:+.1f} % "
                     f"(over {bdv.get('lo', float('nan')):.1f}–{bdv.get('hi', float('nan')):.1f} %) | "
                     f"{v.get('points_above_wavelet') or 'none'} | {clinical} | {joint} |")
    lines += ["", f"## Operating points, fold {first['fold']}", "", "![R–D](ecg_rd.png)", "",
              "| codec | bits/sample/lead | kbit/s | PRDN pooled | mean of leads | worst lead |", "|---|---|---|---|---|---|"]

    def row(label: str, p: dict) -> str:
        return (f"| {label} | {p[RATE]:.3f} | {p['kbit_per_s']:.2f} | {p[POOLED]:.2f} | {p[MEAN_OF_LEADS]:.2f} | "
                f"{p[WORST_LEAD]:.2f} |")

    for kind, pts in first["rows"].items():
        lines += [row(f"{kind} q={p['quality']}", p) for p in pts]
    lines += [row(f"wavelet-zstd step {p['step_mv'] * 1000:g} µV", p) for p in first["wavelet_zstd"]]
    lines += [row(f"dct-zstd step {p['step_mv'] * 1000:g} µV", p) for p in first["dct_zstd"]]
    ll = first["lossless"]
    lines += [f"| FLAC lossless (int16, 1 µV) | {ll['flac_bits_per_sample']:.3f} | | 0 | 0 | 0 |",
              f"| zstd lossless (int16 differences) | {ll['zstd_bits_per_sample']:.3f} | | 0 | 0 | 0 |"]
    fig = first.get("figures")
    if fig:
        lines += ["", f"## The default point (q={fig['quality']})", "",
                  f"{fig[RATE]:.3f} bits/sample/lead; PRDN pooled {fig[POOLED]:.2f} %, mean of leads "
                  f"{fig[MEAN_OF_LEADS]:.2f} %, worst lead {fig[WORST_LEAD]:.2f} %. Error power above 60 Hz is "
                  f"{100 * fig['error_over_signal_above_60hz']:.0f} % of the signal's power there.", "",
                  "![per-lead PRDN](ecg_per_lead.png)", "", "![error spectrum](ecg_error_spectrum.png)"]
    path = out / "ecg_rd.md"
    path.write_text("\n".join(lines) + "\n")
    return path
