"""``ndsc train``, ``ndsc eval``, ``ndsc bounds``, ``ndsc rd-gaussian`` (heavy imports inside handlers)."""
from __future__ import annotations

import argparse
import json


def configure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a distributed codec and export a model bundle")
    p.add_argument("--preset", default="gaussian-quick", help="named config (see training/presets.py)")
    p.add_argument("--config", help="JSON TrainConfig file (overrides --preset)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--steps", type=int, help="override the number of steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a top-level config field, e.g. --set beta_mi=0.1")
    p.add_argument("--checkpoint", help="also write a self-describing training checkpoint here")
    p.add_argument("--device", help="torch device to train on: auto (CUDA if present, else CPU; default: the config's), cpu, cuda, cuda:N")
    p.set_defaults(handler=_train)

    p = sub.add_parser("eval", help="evaluate a bundle through the real path (rate from bytes written)")
    p.add_argument("bundle")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--max-windows", type=int)
    p.add_argument("--device", help="torch device of the joint decoder (default: cuda if present)")
    p.add_argument("--quality", help="operating point of a variable-rate bundle (default: its default point)")
    p.add_argument("--json", action="store_true", help="print the full JSON summary")
    p.set_defaults(handler=_eval)

    p = sub.add_parser("bounds", help="Gaussian two-source sum-rate limits, bits per sample pair")
    p.add_argument("--rho", type=float, default=0.9)
    p.add_argument("--distortion", type=float, default=0.1)
    p.set_defaults(handler=_bounds)

    p = sub.add_parser("rd-gaussian", help="train a few λ points on Gaussian sources and plot real bits vs bounds")
    p.add_argument("--out", default="rd_gaussian", help="output folder (bundles, results.json, rd.png)")
    p.add_argument("--rho", type=float, default=0.9)
    p.add_argument("--lambdas", default="0.01,0.03,0.1,0.3", help="comma-separated λ values")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--beta-mi", type=float, default=0.0)
    p.add_argument("--samples", type=int, default=1024, help="samples per window (amortises coder overhead)")
    p.add_argument("--windows", type=int, default=160, help="windows generated before the 80/10/10 split")
    p.set_defaults(handler=_rd_gaussian)


def _train(args) -> int:
    from models.config import TrainConfig
    from training.pipeline import train_and_export
    from training.presets import get_preset

    cfg = TrainConfig.load(args.config) if args.config else get_preset(args.preset)
    changes = {}
    for item in args.set:
        key, _, value = item.partition("=")
        changes[key] = json.loads(value)
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.device is not None:
        changes["device"] = args.device
    cfg = cfg.replace(**changes)
    path, report = train_and_export(cfg, args.out, checkpoint=args.checkpoint)
    print(f"bundle {path} ({report['bundle_id']}); trained on {report['train_device']} in {report['train_seconds']:.1f} s")
    _print_eval(report)
    return 0


def _eval(args) -> int:
    from training.evaluate import evaluate_bundle, summary

    from ndsc.bundle import BundleError, load_bundle
    from ndsc.errors import UsageError

    bundle = load_bundle(args.bundle)  # missing or modified: one line from app.cli.main (--debug: traceback)
    try:
        bundle.sources[0].quality(args.quality)  # every source has the same points
    except BundleError as exc:  # an unknown quality point: the message names the bundle's points
        raise UsageError(str(exc), "leave --quality out for the bundle's default point") from exc
    if bundle.binning:  # syndrome sources: coded as served, requests answered in-process
        return _eval_binning(bundle, args)
    report = summary(evaluate_bundle(args.bundle, split=args.split, max_windows=args.max_windows,
                                     device=args.device, quality=args.quality))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print_eval(report)
    return 0


def _print_eval(r: dict) -> None:
    at = f" at quality point {r['quality']}" if r.get("quality") else ""
    print(f"{r['windows']} windows{at}, {r['payload_bytes']} payload bytes (rate = bytes written × 8)")
    print(f"{'source':>12} {'bits/sample':>12} {'estimate':>9} {'RMSE':>9} {'PSNR dB':>8} {'PRD %':>7} {'PRDN %':>7}")
    for s in r["sources"]:
        print(f"{s['name']:>12} {s['bits_per_sample']:12.4f} {s['estimated_bits_per_sample']:9.4f} "
              f"{s['rmse']:9.5f} {s['psnr_db']:8.2f} {s['prd_percent']:7.2f} {s['prdn_percent']:7.2f}")
    print(f"sum rate {r['bits_per_sample_sum']:.4f} bits/sample (table entropy {r['estimated_bits_per_sample_sum']:.4f}, "
          f"coder overhead {r['coding_gap_bits_per_sample_sum']:+.4f}); mean MSE {r['mse_mean']:.6f}")
    if "training_estimate_bits_per_sample_sum" in r:
        print(f"training-loss estimate (float prior, rounded latents): {r['training_estimate_bits_per_sample_sum']:.4f} bits/sample")
    if "kbit_per_s" in r:
        print(f"uplink {r['kbit_per_s']:.3f} kbit/s for all sources")
    if "binning" in r:
        _print_binning(r["binning"])


def _print_binning(b: dict) -> None:
    """The test split as a binning bundle serves it (syndrome sources; every feedback bit counted)."""
    coded = ", ".join(f"source {j} given {s['side_source']}: H {s['h_bits_per_symbol']:.3f} → "
                      f"H|side {s['h_given_side_bits_per_symbol']:.3f} bits/symbol" for j, s in b["sources"].items())
    print(f"served with binning ({coded}): sum rate {b['sum_rate_bits_per_pair']:.4f} bits/sample, per source "
          f"{', '.join(f'{v:.4f}' for v in b['bits_per_source'])}; MSE "
          f"{', '.join(f'{v:.6f}' for v in b['mse_per_source'])}; {b['requests_per_window']:.2f} requests/window, "
          f"{b['fallbacks']} fallbacks")


def _eval_binning(bundle, args) -> int:
    from training.binning import measure_offline
    from training.evaluate import dataset_for_bundle, summary

    windows = getattr(dataset_for_bundle(bundle), args.split)[: args.max_windows]
    served = measure_offline(bundle, windows)
    served.pop("x_hat")
    rows = served.pop("windows")
    report = summary({**served, "windows": len(rows), "fallbacks": sum(sum(r["fallback"]) for r in rows),
                      "sources": bundle.evaluation.get("test", {}).get("binning", {}).get("sources", {})})
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{len(rows)} windows of the {args.split} split")
        _print_binning(report)
    return 0


def _bounds(args) -> int:
    from ndsc.bounds import all_bounds

    b = all_bounds(args.rho, args.distortion)
    print(f"rho={args.rho} D={args.distortion} (bits per sample pair)")
    for name, label in [("separate", "separate coding"), ("no_binning", "joint decoding, no binning"),
                        ("berger_tung", "Berger-Tung"), ("centralised", "centralised")]:
        print(f"{label:>28}: {b[name]:.2f}")
    return 0


def _rd_gaussian(args) -> int:
    from training.rd_gaussian import run_rd_gaussian

    lambdas = [float(v) for v in args.lambdas.split(",")]
    out = run_rd_gaussian(args.out, rho=args.rho, lambdas=lambdas, steps=args.steps, beta_mi=args.beta_mi,
                          samples=args.samples, n_windows=args.windows)
    print(f"wrote {out}")
    return 0
