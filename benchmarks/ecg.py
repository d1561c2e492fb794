"""ECG benchmark: distributed codec vs separate coding vs lossless FLAC/zstd on held-out patients.

Trains (or reuses) a distributed codec (joint decoder) and the separate-coding baseline
(``ModelConfig.joint_decoder=False``, the same encoders and per-node capacity) at a few
(λ, input scale) points on the 12-lead ≥ 250 Hz records of ``../shared/data/ecg`` (split by patient), then
measures on the held-out test patients (or the validation patients, ``--split val``, for
choosing settings), all in this run:

* rate from real bytes: bits/sample/lead (8 × payload bytes / samples) and kbit/s;
* RMSE (µV), PRD and PRDN on the signal as recorded (no filtering; PRDN subtracts each
  window's mean in the denominator only), over all leads and per lead;
* FLAC and zstd (level 19, first differences) of the same samples as int16 at 1 µV, and
  the ``dct-zstd`` transform codec (orthonormal DCT per window and lead, uniform
  quantiser, zstd) at a few quantiser steps;
* savings of the distributed codec over separate coding at equal PRDN: per distributed
  point (log-rate interpolated along the separate curve, only inside the PRDN range it
  covers) and the BD-rate (pchip, log-rate vs PRDN) over the PRDN range both curves cover;
* the lowest PRDN the distributed codec reaches at ≤ 0.5 bit/sample/lead (measured points,
  and interpolated along its curve at exactly 0.5);
* edge encode speed as a multiple of real time on one core (ONNX Runtime with one
  thread + rounding + ANS), beside FLAC's encode speed of the same samples.

    python benchmarks/ecg.py --group-size 3 --input-scales 0.5,0.1,0.03 --steps 400 --out runs/ecg-bench

``--set KEY=VALUE`` overrides a training-config field for both kinds (``lr=0.003``,
``model.latent_gain=true``); the bundle folder names carry the overrides, so they never
collide with bundles trained without them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KINDS = ("distributed", "separate")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.003", "model.latent_gain=true"]`` → {"lr": 0.003, "model.latent_gain": True}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def apply_overrides(cfg, overrides: dict[str, Any]) -> None:
    """Set ``overrides`` on a TrainConfig in place; unknown fields are an error, not a silent no-op."""
    for key, value in overrides.items():
        obj, name = cfg, key
        if "." in key:
            head, name = key.split(".", 1)
            obj = getattr(cfg, head)
        if not hasattr(obj, name):
            raise ValueError(f"unknown config field {key!r}")
        setattr(obj, name, value)


def bundle_name(kind: str, group_size: int, lam: float, scale: float, overrides: dict[str, Any],
                decoder: str | None = None) -> str:
    name = f"g{group_size}-{kind}" + (f"-{decoder}" if decoder and kind == "distributed" else "")
    name += f"-lam{lam:g}" + (f"-s{scale:g}" if scale != 0.5 else "")
    for key, value in sorted(overrides.items()):
        name += f"-{key.split('.')[-1]}{json.dumps(value).strip(chr(34))}"
    return name


def train_points(data: str, group_size: int, points: list[tuple[float, float]], steps: int,
                 out: Path, kinds: tuple[str, ...] = KINDS,
                 overrides: dict[str, Any] | None = None, decoder: str | None = None) -> dict[str, list[Path]]:
    """Bundles for each (decoder kind, (λ, input scale)), trained unless already present.

    ``decoder`` names the joint decoder of the distributed kind (default: the preset's,
    ``ecg-joint``). The separate kind always keeps the preset's decoder with ``joint=False``:
    N grouped decoders of width ``hidden`` each, the same network whichever ECG decoder
    name is given (``ecg-joint-wide`` only widens the joint case to ``hidden`` × N).
    """
    from training.pipeline import train_and_export
    from training.presets import get_preset

    overrides = overrides or {}
    paths: dict[str, list[Path]] = {kind: [] for kind in kinds}
    for kind in paths:
        for lam, scale in points:
            path = out / bundle_name(kind, group_size, lam, scale, overrides, decoder)
            if not (path / "manifest.json").is_file():
                cfg = get_preset("ecg-12x1" if group_size == 1 else "ecg-4x3").replace(
                    lmbda=lam, steps=steps, threads=1, progress=False)
                cfg.data.params = {**cfg.data.params, "records": [data], "group_size": group_size}
                cfg.model.joint_decoder = kind == "distributed"
                cfg.model.input_scale = scale
                if decoder and kind == "distributed":
                    cfg.model.decoder = decoder
                apply_overrides(cfg, overrides)
                t0 = time.time()
                train_and_export(cfg, path)
                print(f"trained {path.name} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            paths[kind].append(path)
    return paths


def train_seconds(path: Path) -> float:
    """Training seconds recorded in the bundle's manifest by the pipeline."""
    manifest = json.loads((path / "manifest.json").read_text())
    return float(manifest.get("evaluation", {}).get("test", {}).get("train_seconds", float("nan")))


def measure(path: Path, windows: np.ndarray, leads: list[str], fs: float) -> dict:
    from training.ecg_eval import ecg_report
    from training.evaluate import evaluate_bundle

    result = evaluate_bundle(path, windows=windows)
    report = ecg_report(result, windows, leads, fs)
    report["bundle"] = path.name
    report["train_seconds"] = train_seconds(path)
    return report


def measure_dct(data, windows: np.ndarray, leads: list[str], fs: float, step_mv: float) -> dict:
    """The ``dct-zstd`` baseline at quantiser step ``step_mv``: real bytes, same metrics."""
    from training.baselines.base import build_baseline
    from training.ecg_eval import ecg_report

    codec = build_baseline("dct-zstd", step=step_mv)
    codec.fit(data)
    payloads = codec.compress(windows)
    x_hat = codec.decompress(payloads)
    sources = [{"name": f"node{i}", "payload_bytes": sum(len(row[i]) for row in payloads)}
               for i in range(windows.shape[1])]
    result = {"x_hat": x_hat, "payload_bytes": sum(s["payload_bytes"] for s in sources), "sources": sources}
    report = ecg_report(result, windows, leads, fs)
    report["step_mv"] = step_mv
    return report


def encode_speed(path: Path, windows: np.ndarray, fs: float) -> float:
    """× real time of one node's edge encoder (1 ONNX thread) over the test windows."""
    from edge_encoder.encoder import EdgeEncoder
    from ndsc.bundle import load_bundle

    enc = EdgeEncoder(load_bundle(path), 0, intra_op_threads=1)
    enc.encode(windows[0, 0])  # warm-up
    start = time.perf_counter()
    for w in windows[:, 0]:
        enc.encode(w)
    seconds = time.perf_counter() - start
    return (len(windows) * windows.shape[-1] / fs) / seconds


def frontier(points: list[dict]) -> list[dict]:
    """The R-D frontier of a sweep: points no other point beats on both rate and PRDN.

    A sweep over (λ, input scale) can leave dominated points (more bits for no lower
    PRDN, or a diverged run); interpolating through them would bend the curve the
    wrong way, so equal-PRDN comparisons use the frontier only.
    """
    def beaten(p: dict) -> bool:
        r, d = p["bits_per_sample_per_lead"], p["prdn_percent"]
        return any(q["bits_per_sample_per_lead"] <= r and q["prdn_percent"] <= d
                   and (q["bits_per_sample_per_lead"] < r or q["prdn_percent"] < d) for q in points)

    return sorted((p for p in points if not beaten(p)), key=lambda p: p["bits_per_sample_per_lead"])


def savings_at_equal_prdn(dist: list[dict], sep: list[dict]) -> list[dict]:
    """For each distributed frontier point inside the separate frontier's PRDN range: rate saved (%)."""
    dist, sep = frontier(dist), frontier(sep)
    pts = sorted((p["prdn_percent"], np.log(p["bits_per_sample_per_lead"])) for p in sep)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    out = []
    for p in dist:
        if len(xs) >= 2 and xs[0] <= p["prdn_percent"] <= xs[-1]:
            sep_rate = float(np.exp(np.interp(p["prdn_percent"], xs, ys)))
            out.append({"prdn_percent": p["prdn_percent"], "separate_bits": sep_rate,
                        "distributed_bits": p["bits_per_sample_per_lead"],
                        "saving_percent": 100 * (1 - p["bits_per_sample_per_lead"] / sep_rate)})
    return out


def bd_saving(dist: list[dict], sep: list[dict]) -> dict[str, float]:
    """BD-rate of distributed vs separate frontiers over the PRDN range both cover (pchip on log-rate).

    Returns the range and the saving in percent (positive = the distributed codec needs
    fewer bits); NaN when the curves share no PRDN range or one has fewer than 2 points.
    """
    from training.study.bdrate import bd_rate

    dist, sep = frontier(dist), frontier(sep)
    if not dist or not sep:
        return {"lo": float("nan"), "hi": float("nan"), "saving_percent": float("nan")}
    rate = [[p["bits_per_sample_per_lead"] for p in c] for c in (sep, dist)]
    prdn = [[p["prdn_percent"] for p in c] for c in (sep, dist)]
    lo = max(min(prdn[0]), min(prdn[1]))
    hi = min(max(prdn[0]), max(prdn[1]))
    change = bd_rate(rate[0], prdn[0], rate[1], prdn[1], method="pchip")
    return {"lo": lo, "hi": hi, "saving_percent": -change}


def best_prdn_at_rate(points: list[dict], max_bits: float = 0.5) -> dict[str, float]:
    """Lowest measured PRDN at ≤ ``max_bits`` bit/sample/lead, and the PRDN interpolated
    (linearly in log-rate along the frontier) at exactly ``max_bits`` when the frontier spans it."""
    points = frontier(points)
    inside = [p for p in points if p["bits_per_sample_per_lead"] <= max_bits]
    best = min(inside, key=lambda p: p["prdn_percent"]) if inside else None
    pts = sorted((np.log(p["bits_per_sample_per_lead"]), p["prdn_percent"]) for p in points)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    at = float(np.interp(np.log(max_bits), xs, ys)) if len(xs) >= 2 and xs[0] <= np.log(max_bits) <= xs[-1] \
        else float("nan")
    return {"measured_prdn_percent": best["prdn_percent"] if best else float("nan"),
            "measured_bits": best["bits_per_sample_per_lead"] if best else float("nan"),
            "interpolated_prdn_percent": at}


def plot(path: Path, rows: dict[str, list[dict]], dct: list[dict], title: str,
         extra: dict[str, list[dict]] | None = None) -> None:
    """R-D plot: every measured point, the frontiers joined; ``extra`` adds labelled curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    curves = [*((k, rows.get(k, [])) for k in KINDS), *(extra or {}).items(), ("dct-zstd", dct)]
    for name, pts in curves:
        pts = [p for p in pts if p["prdn_percent"] < 100]  # a diverged run would flatten the axis
        if not pts:
            continue
        front = frontier(pts)
        line, = ax.plot([p["bits_per_sample_per_lead"] for p in front], [p["prdn_percent"] for p in front],
                        "s--" if name == "dct-zstd" else "o-", label=f"{name} (frontier)")
        rest = [p for p in pts if p not in front]
        if rest:
            ax.plot([p["bits_per_sample_per_lead"] for p in rest], [p["prdn_percent"] for p in rest], "x",
                    color=line.get_color(), label=f"{name} (dominated)")
    ax.plot([0.5], [5.0], "k*", markersize=12, label="target (0.5, 5 %)")
    ax.set_xscale("log")
    ax.set_xlabel("bits / sample / lead (real bytes)")
    ax.set_ylabel("PRDN % (as recorded)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ecg"))
    parser.add_argument("--group-size", type=int, default=3, help="leads per node: 1 (12 nodes), 3, 6")
    parser.add_argument("--lambdas", default="0.0005", help="rate weights λ")
    parser.add_argument("--input-scales", default="0.5,0.1,0.03",
                        help="input scales (mV): the encoder sees x / scale, so a smaller scale quantises the "
                             "latents finer (more bits, less distortion); with short training this moves "
                             "along the R-D curve more than λ does")
    parser.add_argument("--points", default="",
                        help="explicit λ:scale pairs (0.002:0.1,0.0005:0.03), instead of the λ × scale grid")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ecg-bench")
    parser.add_argument("--kinds", default=",".join(KINDS), help="distributed,separate or one of them")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training-config override for both kinds (repeatable), e.g. lr=0.003")
    parser.add_argument("--decoder", help="joint decoder of the distributed kind, e.g. ecg-joint-wide "
                                          "(as wide as the separate decoders together); default the preset's")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="patients to measure on: test (held out) or val (for choosing settings)")
    parser.add_argument("--dct-steps", default="0.01,0.02,0.04,0.08,0.16,0.32",
                        help="dct-zstd quantiser steps (mV); empty for none")
    parser.add_argument("--plot", type=Path, help="write the R-D plot (PNG) here")
    parser.add_argument("--plot-with", action="append", default=[], metavar="JSON:KIND:LABEL",
                        help="also plot KIND's points from an earlier run's --json under LABEL (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    from ndsc.bundle import load_bundle
    from training.ecg_eval import lossless_reference
    from training.evaluate import dataset_for_bundle

    torch.set_num_threads(1)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds: choose from {KINDS}")
    overrides = parse_overrides(args.overrides)
    if args.points:
        points = [(float(lam), float(sc)) for lam, sc in (p.split(":") for p in args.points.split(","))]
    else:
        points = [(float(lam), float(sc)) for lam in args.lambdas.split(",") for sc in args.input_scales.split(",")]
    paths = train_points(args.data, args.group_size, points, args.steps, args.out, kinds, overrides, args.decoder)
    first = load_bundle(paths[kinds[0]][0])
    data = dataset_for_bundle(first)  # the same patient split for every bundle
    leads, fs, windows = data.info["leads"], data.sample_rate, getattr(data, args.split)
    rows = {kind: [measure(p, windows, leads, fs) for p in ps] for kind, ps in paths.items()}
    dct = [measure_dct(data, windows, leads, fs, float(s)) for s in args.dct_steps.split(",") if s]
    lossless = lossless_reference(windows, fs)
    speed = encode_speed(paths[kinds[0]][0], windows, fs)
    dist, sep = rows.get("distributed", []), rows.get("separate", [])
    savings = savings_at_equal_prdn(dist, sep)
    bd = bd_saving(dist, sep)
    best = best_prdn_at_rate(dist) if dist else None

    n_nodes = windows.shape[1]
    print(f"{args.split} split: {data.info['patients'][args.split]} patients, {len(windows)} windows of "
          f"{windows.shape[-1] / fs:.2f} s, {n_nodes} nodes × {windows.shape[2]} leads at {fs:g} Hz "
          f"(split: {data.info['split']}); steps {args.steps}; overrides {overrides or 'none'}; "
          f"distributed decoder {args.decoder or 'preset (ecg-joint)'}")
    print(f"{'codec':<28}{'bits/sample/lead':>17}{'kbit/s':>9}{'RMSE µV':>9}{'PRD %':>8}{'PRDN %':>8}{'train s':>9}")
    for kind in kinds:
        for (lam, sc), r in zip(points, rows[kind]):
            print(f"{kind + f' λ={lam:g} s={sc:g}':<28}{r['bits_per_sample_per_lead']:>17.3f}{r['kbit_per_s']:>9.2f}"
                  f"{r['rmse_uv']:>9.1f}{r['prd_percent']:>8.2f}{r['prdn_percent']:>8.2f}{r['train_seconds']:>9.0f}")
    for r in dct:
        print(f"{'dct-zstd step=' + format(r['step_mv'] * 1000, 'g') + ' µV':<28}{r['bits_per_sample_per_lead']:>17.3f}"
              f"{r['kbit_per_s']:>9.2f}{r['rmse_uv']:>9.1f}{r['prd_percent']:>8.2f}{r['prdn_percent']:>8.2f}")
    n_all = windows.shape[1] * windows.shape[2]
    raw_kbps = 16 * n_all * fs / 1000
    for name in ("flac", "zstd"):
        bits = lossless[f"{name}_bits_per_sample"]
        print(f"{name + ' (lossless int16, 1 µV)':<28}{bits:>17.3f}{bits * n_all * fs / 1000:>9.2f}"
              f"{0.0:>9.1f}{0.0:>8.2f}{0.0:>8.2f}")
    print(f"{'raw int16':<28}{16.0:>17.3f}{raw_kbps:>9.2f}")
    for s in savings:
        print(f"at PRDN {s['prdn_percent']:.2f} %: distributed {s['distributed_bits']:.3f} vs separate "
              f"{s['separate_bits']:.3f} bits/sample/lead → {s['saving_percent']:+.1f} % fewer bits")
    if dist and sep and not savings:
        print("distributed points fall outside the separate curve's PRDN range: no equal-PRDN comparison")
    if dist and sep:
        print("frontier points (bits, PRDN %): " + "; ".join(
            f"{k} " + ", ".join(f"({p['bits_per_sample_per_lead']:.3f}, {p['prdn_percent']:.2f})" for p in frontier(rows[k]))
            for k in KINDS))
        if np.isnan(bd["saving_percent"]):
            print("BD-rate: the distributed and separate frontiers share no PRDN range (or one has < 2 points)")
        else:
            print(f"BD-rate saving of distributed over separate (pchip, log-rate vs PRDN, PRDN {bd['lo']:.2f}–"
                  f"{bd['hi']:.2f} %): {bd['saving_percent']:+.1f} % fewer bits")
    if best is not None:
        print(f"distributed at ≤ 0.5 bit/sample/lead: best measured PRDN {best['measured_prdn_percent']:.2f} % "
              f"(at {best['measured_bits']:.3f}); interpolated at 0.5: {best['interpolated_prdn_percent']:.2f} %")
        shown = next((r for r in sorted(dist, key=lambda r: r["prdn_percent"])
                       if r["bits_per_sample_per_lead"] <= 0.5), dist[0])
        (lam, sc) = points[dist.index(shown)]
        worst = max(shown["per_lead"], key=lambda p: p["prdn_percent"])
        print(f"per-lead PRDN % (distributed, λ={lam:g}, s={sc:g}): "
              + " ".join(f"{p['lead']}={p['prdn_percent']:.1f}" for p in shown["per_lead"])
              + f" (worst {worst['lead']})")
    n_leads = n_nodes * windows.shape[2]
    flac_node = lossless["flac_encode_x_realtime"] * n_leads / windows.shape[2]  # FLAC of one node's leads
    print(f"edge encode speed (1 core, node 0 of {n_nodes}, {windows.shape[2]} lead(s)): {speed:.0f}× real time; "
          f"FLAC encode of the same lead(s): {flac_node:.0f}× real time; codec/FLAC speed ratio {speed / flac_node:.2f}")
    if args.plot:
        extra = {}
        for item in args.plot_with:
            source, kind, label = item.split(":", 2)
            extra[label] = json.loads(Path(source).read_text())["rows"][kind]
        plot(args.plot, rows, dct, f"ECG {n_nodes}×{windows.shape[2]} leads, {args.split} patients, {args.steps} steps",
             extra)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "dct_zstd": dct, "lossless": lossless,
                                         "encode_x_realtime": speed, "savings": savings, "bd": bd,
                                         "best_at_0.5": best, "points": points, "steps": args.steps,
                                         "split": args.split, "overrides": overrides}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
