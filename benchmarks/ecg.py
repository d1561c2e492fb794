"""ECG benchmark: distributed codec vs separate coding vs lossless FLAC/zstd on held-out patients.

Trains (or reuses) a distributed codec (joint decoder) and the separate-coding baseline
(``ModelConfig.joint_decoder=False``, the same encoders and per-node capacity) at a few
(λ, input scale) points on the 12-lead ≥ 250 Hz records of ``../shared/data/ecg`` (split by patient), then
measures on the held-out test patients, all in this run:

* rate from real bytes: bits/sample/lead (8 × payload bytes / samples) and kbit/s;
* RMSE (µV), PRD and PRDN on the signal as recorded (no filtering; PRDN subtracts each
  window's mean in the denominator only), over all leads and per lead;
* FLAC and zstd (level 19, first differences) of the same samples as int16 at 1 µV;
* savings of the distributed codec over separate coding at equal PRDN (log-rate
  interpolated along the separate curve, only inside the PRDN range it covers);
* edge encode speed as a multiple of real time on one core (ONNX Runtime with one
  thread + rounding + ANS), beside FLAC's encode speed of the same samples.

    python benchmarks/ecg.py --group-size 3 --input-scales 0.5,0.1,0.03 --steps 400 --out runs/ecg-bench
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def train_points(data: str, group_size: int, points: list[tuple[float, float]], steps: int,
                 out: Path) -> dict[str, list[Path]]:
    """Bundles for each (decoder kind, (λ, input scale)), trained unless already present."""
    from training.pipeline import train_and_export
    from training.presets import get_preset

    paths: dict[str, list[Path]] = {"distributed": [], "separate": []}
    for kind in paths:
        for lam, scale in points:
            path = out / (f"g{group_size}-{kind}-lam{lam:g}" + (f"-s{scale:g}" if scale != 0.5 else ""))
            if not (path / "manifest.json").is_file():
                cfg = get_preset("ecg-12x1" if group_size == 1 else "ecg-4x3").replace(
                    lmbda=lam, steps=steps, threads=1, progress=False)
                cfg.data.params = {**cfg.data.params, "records": [data], "group_size": group_size}
                cfg.model.joint_decoder = kind == "distributed"
                cfg.model.input_scale = scale
                t0 = time.time()
                train_and_export(cfg, path)
                print(f"trained {path.name} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            paths[kind].append(path)
    return paths


def measure(path: Path, windows: np.ndarray, leads: list[str], fs: float) -> dict:
    from training.ecg_eval import ecg_report
    from training.evaluate import evaluate_bundle

    result = evaluate_bundle(path, windows=windows)
    report = ecg_report(result, windows, leads, fs)
    report["bundle"] = path.name
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


def savings_at_equal_prdn(dist: list[dict], sep: list[dict]) -> list[dict]:
    """For each distributed point inside the separate curve's PRDN range: rate saved (%)."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ecg"))
    parser.add_argument("--group-size", type=int, default=3, help="leads per node: 1 (12 nodes), 3, 6")
    parser.add_argument("--lambdas", default="0.0005", help="rate weights λ")
    parser.add_argument("--input-scales", default="0.5,0.1,0.03",
                        help="input scales (mV): the encoder sees x / scale, so a smaller scale quantises the "
                             "latents finer (more bits, less distortion); with short training this moves "
                             "along the R-D curve more than λ does")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ecg-bench")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    from ndsc.bundle import load_bundle
    from training.ecg_eval import lossless_reference
    from training.evaluate import dataset_for_bundle

    torch.set_num_threads(1)
    points = [(float(lam), float(sc)) for lam in args.lambdas.split(",") for sc in args.input_scales.split(",")]
    paths = train_points(args.data, args.group_size, points, args.steps, args.out)
    first = load_bundle(paths["distributed"][0])
    data = dataset_for_bundle(first)  # the same patient split for every bundle
    leads, fs, windows = data.info["leads"], data.sample_rate, data.test
    rows = {kind: [measure(p, windows, leads, fs) for p in ps] for kind, ps in paths.items()}
    lossless = lossless_reference(windows, fs)
    speed = encode_speed(paths["distributed"][0], windows, fs)
    savings = savings_at_equal_prdn(rows["distributed"], rows["separate"])

    n_nodes = windows.shape[1]
    print(f"held-out: {data.info['patients']['test']} patients, {len(windows)} windows of "
          f"{windows.shape[-1] / fs:.2f} s, {n_nodes} nodes × {windows.shape[2]} leads at {fs:g} Hz "
          f"(split: {data.info['split']})")
    print(f"{'codec':<28}{'bits/sample/lead':>17}{'kbit/s':>9}{'RMSE µV':>9}{'PRD %':>8}{'PRDN %':>8}")
    for kind in ("distributed", "separate"):
        for (lam, sc), r in zip(points, rows[kind]):
            print(f"{kind + f' λ={lam:g} s={sc:g}':<28}{r['bits_per_sample_per_lead']:>17.3f}{r['kbit_per_s']:>9.2f}"
                  f"{r['rmse_uv']:>9.1f}{r['prd_percent']:>8.2f}{r['prdn_percent']:>8.2f}")
    n_all = windows.shape[1] * windows.shape[2]
    raw_kbps = 16 * n_all * fs / 1000
    for name in ("flac", "zstd"):
        bits = lossless[f"{name}_bits_per_sample"]
        print(f"{name + ' (lossless int16, 1 µV)':<28}{bits:>17.3f}{bits * n_all * fs / 1000:>9.2f}"
              f"{0.0:>9.1f}{0.0:>8.2f}{0.0:>8.2f}")
    print(f"{'raw int16':<28}{16.0:>17.3f}{raw_kbps:>9.2f}")
    for s in savings:
        print(f"at PRDN {s['prdn_percent']:.1f} %: distributed {s['distributed_bits']:.3f} vs separate "
              f"{s['separate_bits']:.3f} bits/sample/lead → {s['saving_percent']:+.1f} % fewer bits")
    if not savings:
        print("distributed points fall outside the separate curve's PRDN range: no equal-PRDN comparison")
    worst = max(rows["distributed"][-1]["per_lead"], key=lambda p: p["prdn_percent"])
    print("per-lead PRDN %% (distributed, λ=%g, s=%g): " % points[-1]
          + " ".join(f"{p['lead']}={p['prdn_percent']:.1f}" for p in rows["distributed"][-1]["per_lead"])
          + f" (worst {worst['lead']})")
    n_leads = n_nodes * windows.shape[2]
    flac_node = lossless["flac_encode_x_realtime"] * n_leads / windows.shape[2]  # FLAC of one node's leads
    print(f"edge encode speed (1 core, node 0 of {n_nodes}, {windows.shape[2]} lead(s)): {speed:.0f}× real time; "
          f"FLAC encode of the same lead(s): {flac_node:.0f}× real time; codec/FLAC speed ratio {speed / flac_node:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "lossless": lossless, "encode_x_realtime": speed,
                                         "savings": savings, "points": points}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
