"""``ndsc demo``: the local multi-sensor demo (decoder + N edge processes on loopback)."""
from __future__ import annotations

import argparse


def configure(subparsers) -> None:
    from ndsc.bundles import DEFAULT_BUNDLE

    # Defaults come from DemoOptions, so --help names the ones that run.
    from app.demo_options import DEFAULTS as d

    p = subparsers.add_parser(
        "demo", help="run a decoder and N edge nodes on loopback with a live rate/latency/distortion table",
        description=f"Starts `ndsc decoder` and one `ndsc edge` per source as separate processes on loopback "
                    f"with the shipped {DEFAULT_BUNDLE} bundle (its nodes replay the 12-lead ECG that ships "
                    f"with pydicom), and shows per-node uplink kbit/s vs the raw 16-bit rate, latency p50/p99, "
                    f"audited distortion and, for ECG records, PRDN per lead. The bundle and every source are "
                    f"checked before anything starts. Ctrl-C stops every process and prints the run's totals.")
    p.add_argument("--bundle", help=f"model bundle directory (default: the shipped {DEFAULT_BUNDLE})")
    p.add_argument("--source", help="source spec for every node (default: the bundle's replay source, "
                                    "e.g. dicom:pydicom#loop=1)")
    p.add_argument("--nodes", type=int, help="run only the first K sources (default: all)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C or the "
                                                  "sources end)")
    p.add_argument("--fast", action="store_true", help="nodes send as fast as possible, not in real time")
    p.add_argument("--audit-every", type=int, default=d.audit_every,
                   help="audit 1 in N windows for distortion (default: %(default)s)")
    p.add_argument("--flush-interval", type=float, default=d.flush_interval,
                   help="edge batching interval, seconds (default: %(default)s)")
    p.add_argument("--deadline", type=float, default=d.deadline,
                   help="decoder's aligner deadline, seconds (default: %(default)s)")
    p.add_argument("--quality", help="operating point of a variable-rate bundle for every node (default: the "
                                     "bundle's default point)")
    p.add_argument("--work-dir", help="keep the process logs here (default: a temporary folder, removed at "
                                      "the end unless a process failed)")
    p.add_argument("--ecg", metavar="RECORD", help="replay a real ECG record (WFDB path, .dcm, or 'pydicom'), one "
                                                   "node per lead group, with PRDN per lead")
    p.add_argument("--stereo", action="store_true", help="two camera nodes send whole frames of scikit-image's "
                                                        "stereo pair with the shipped stereo bundle; PSNR and "
                                                        "MS-SSIM per view of the live reconstructions")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from app.demo import Demo, DemoOptions

    options = DemoOptions(bundle=args.bundle, source=args.source, nodes=args.nodes, duration=args.duration,
                          fast=args.fast, audit_every=args.audit_every, flush_interval=args.flush_interval,
                          deadline=args.deadline, work_dir=args.work_dir, ecg=args.ecg,
                          quality=args.quality, stereo=args.stereo)
    return Demo(options).run()
