"""ECG subcommands: ``ndsc ecg-info``, ``ndsc ecg-send``, ``ndsc ecg-eval``, ``ndsc ecg-train``.

``ecg-send`` plays the part of an acquisition device: it streams a record's leads as
little-endian int16 frames (the format of the ``tcp:``/``stdin:`` sources) and never
loads torch. Heavy imports live inside the handlers.
"""
from __future__ import annotations

import argparse
import json
import sys


def configure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ecg-info", help="read an ECG record (WFDB path, .dcm, or 'pydicom') and describe it")
    p.add_argument("record")
    p.set_defaults(handler=_info)

    p = sub.add_parser("ecg-send", help="stream a record's leads as int16 frames (like a device) to stdout or TCP",
                       description="Frames are little-endian int16, one per sampling instant (the node's leads "
                                   "interleaved), value = round(mV × gain); feed them to a node with "
                                   "--source 'stdin:#fs=FS,gain=GAIN' or 'tcp:HOST:PORT#fs=FS,gain=GAIN'.")
    p.add_argument("record", help="WFDB record path, .dcm file, or 'pydicom'")
    p.add_argument("--leads", default="I,II,III", help="comma-separated lead names (default I,II,III)")
    p.add_argument("--fs", type=float, default=500.0, help="stream sample rate (Hz)")
    p.add_argument("--gain", type=float, default=1000.0, help="adu per mV")
    p.add_argument("--listen", metavar="HOST:PORT", help="serve one TCP connection (a node with tcp:HOST:PORT)")
    p.add_argument("--connect", metavar="HOST:PORT", help="connect to a node listening (tcp:...#listen=1)")
    p.add_argument("--framing", choices=["raw", "block"], default="raw")
    p.add_argument("--chunk", type=float, default=0.1, help="seconds per write")
    p.add_argument("--fast", action="store_true", help="send as fast as possible, not in real time")
    p.add_argument("--loop", action="store_true", help="start over at the end of the record")
    p.set_defaults(handler=_send)

    p = sub.add_parser("ecg-eval", help="code a record with an ECG bundle: real bits, PRDN per lead, vs FLAC")
    p.add_argument("bundle")
    p.add_argument("record", nargs="?", default="pydicom", help="WFDB path, .dcm, or 'pydicom' (default)")
    p.add_argument("--quality", help="operating point of a variable-rate bundle (default: its default point)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_eval)

    p = sub.add_parser("ecg-train", help="train an ECG bundle on a folder of records (split by patient)")
    p.add_argument("--records", action="append", required=True, help="record folder or path (repeatable)")
    p.add_argument("--preset", default="ecg-12lead", help="ecg-12lead (4×3) | ecg-12x1 | ecg-4x3 | ecg-2x6")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int)
    p.add_argument("--lmbda", type=float, action="append",
                   help="rate weight λ of a quality point (repeatable: one point each, lowest rate first); "
                        "default: the preset's six points")
    p.add_argument("--separate", action="store_true", help="separate decoders (the separate-coding baseline)")
    p.add_argument("--device", help="torch device to train on: auto (CUDA if present, else CPU; default), cpu, cuda, cuda:N")
    p.set_defaults(handler=_train)


def _info(args) -> int:
    import numpy as np

    from ndsc.sources.ecg import read_record

    rec = read_record(args.record)
    print(json.dumps({"name": rec.name, "fs": rec.fs, "leads": list(rec.leads), "samples": rec.signal.shape[1],
                      "seconds": round(rec.duration, 3), "patient": rec.patient, "units": "mV",
                      "peak_mv": round(float(np.nanmax(np.abs(rec.signal))), 4)}))
    return 0


def _send(args) -> int:
    import socket
    import time

    from ndsc.sources.ecg import parse_leads, read_record
    from ndsc.sources.stream import encode_block, encode_frames

    rec = read_record(args.record).select(parse_leads(args.leads)).resample(args.fs)
    step = max(1, int(round(args.chunk * args.fs)))
    encode = encode_block if args.framing == "block" else encode_frames
    if args.listen or args.connect:
        host, _, port = (args.listen or args.connect).rpartition(":")
        host = host.strip("[]")
        if args.listen:
            server = socket.create_server((host, int(port)))
            conn, _ = server.accept()
            server.close()
        else:
            conn = socket.create_connection((host, int(port)), timeout=30)
        out = conn.makefile("wb")
    else:
        conn, out = None, sys.stdout.buffer
    start = time.monotonic()
    sent = 0
    try:
        while True:
            for lo in range(0, rec.signal.shape[1], step):
                chunk = rec.signal[:, lo:lo + step]
                out.write(encode(chunk, args.gain))
                out.flush()
                sent += chunk.shape[1]
                if not args.fast:
                    delay = start + sent / args.fs - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            if not args.loop:
                break
    except (BrokenPipeError, ConnectionResetError):
        print(f"receiver closed the stream after {sent} frames", file=sys.stderr)
    finally:
        try:
            out.close()
        except (BrokenPipeError, OSError):
            pass
        if conn is not None:
            conn.close()
    return 0


def _eval(args) -> int:
    from ndsc.bundle import BundleError, load_bundle
    from ndsc.errors import UsageError
    from training.ecg_eval import ecg_report, lossless_reference, record_windows
    from training.evaluate import evaluate_bundle

    bundle = load_bundle(args.bundle)
    leads = [l for s in bundle.sources for l in s.channel_names]
    c, t = bundle.sources[0].input_shape
    try:
        point = bundle.sources[0].quality(args.quality)  # every source has the same points
    except BundleError as exc:  # an unknown quality point: one line from app.cli.main, naming the points
        raise UsageError(str(exc), "leave --quality out for the bundle's default point") from exc
    windows = record_windows(args.record, leads, c, bundle.sample_rate, t)
    result = evaluate_bundle(args.bundle, windows=windows, quality=args.quality)
    report = {"quality": point.name if point else "", **ecg_report(result, windows, leads, bundle.sample_rate),
              **lossless_reference(windows, bundle.sample_rate)}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.record}: {report['windows']} windows, {report['seconds']:.1f} s, {len(leads)} leads at "
          f"{bundle.sample_rate:g} Hz (rate = payload bytes × 8)")
    if point:
        print(f"quality point {point.name} (of {', '.join(bundle.quality_names)}; default {bundle.default_quality})")
    print(f"codec {report['bits_per_sample_per_lead']:.3f} bits/sample/lead = {report['kbit_per_s']:.2f} kbit/s "
          f"(raw 16-bit {report['raw_kbit_per_s']:.0f} kbit/s; FLAC {report['flac_bits_per_sample']:.2f} "
          f"bits/sample/lead, zstd {report['zstd_bits_per_sample']:.2f})")
    print(f"RMSE {report['rmse_uv']:.1f} µV, PRD {report['prd_percent']:.2f} %, PRDN {report['prdn_percent']:.2f} %")
    print("  ".join(f"{p['lead']}: {p['prdn_percent']:.1f}%" for p in report["per_lead"]))
    return 0


def _train(args) -> int:
    from training.pipeline import train_and_export
    from training.presets import get_preset

    cfg = get_preset(args.preset)
    if args.steps:
        cfg.steps = args.steps
    if args.lmbda:
        if cfg.model.quality_lambdas:  # a variable-rate preset: the λs name its quality points
            cfg.model.quality_lambdas = sorted(args.lmbda, reverse=True)
            cfg.model.default_quality = None
        else:
            cfg.lmbda = args.lmbda[0]
    cfg.model.joint_decoder = not args.separate
    cfg.data.params = {**cfg.data.params, "records": list(args.records)}
    if args.device is not None:
        cfg.device = args.device
    path, report = train_and_export(cfg, args.out)
    print(f"bundle {path} ({report['bundle_id']}): {report['bits_per_sample_mean']:.3f} bits/sample/lead, "
          f"PRDN {report['overall_prdn_percent']:.2f} % on {report['windows']} held-out windows; "
          f"trained on {report['train_device']} in {report['train_seconds']:.1f} s")
    return 0
