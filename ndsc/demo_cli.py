"""``ndsc demo``: the local multi-sensor demo (decoder + N edge processes on loopback)."""
from __future__ import annotations

import argparse


def configure(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run a decoder and N edge nodes on loopback with a live rate/latency/distortion table",
        description="Starts `ndsc decoder` and one `ndsc edge` per source as separate processes on loopback, "
                    "using the shipped ecg-synth-quick bundle (trained in about a minute if missing), and shows "
                    "per-node uplink kbit/s, total vs raw 16-bit rate, latency and audited distortion. "
                    "Ctrl-C stops every process.")
    p.add_argument("--bundle", help="model bundle directory (default: the shipped ecg-synth-quick)")
    p.add_argument("--source", help="source spec for every node (default: replay the bundle's test split)")
    p.add_argument("--nodes", type=int, help="run only the first K sources (default: all)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C or the "
                                                  "sources end)")
    p.add_argument("--fast", action="store_true", help="nodes send as fast as possible, not in real time")
    p.add_argument("--audit-every", type=int, default=10, help="audit 1 in N windows for distortion")
    p.add_argument("--flush-interval", type=float, default=0.0, help="edge batching interval, seconds")
    p.add_argument("--deadline", type=float, default=3.0, help="decoder's aligner deadline, seconds")
    p.add_argument("--quality", help="operating point of a variable-rate bundle for every node (default: the "
                                     "bundle's default point)")
    p.add_argument("--work-dir", help="where process logs go (default: a temporary folder)")
    p.add_argument("--ecg", metavar="RECORD", help="replay a real ECG record (WFDB path, .dcm, or 'pydicom'), one "
                                                   "node per lead group, with PRDN per lead")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ndsc.demo import Demo, DemoOptions

    options = DemoOptions(bundle=args.bundle, source=args.source, nodes=args.nodes, duration=args.duration,
                          fast=args.fast, audit_every=args.audit_every, flush_interval=args.flush_interval,
                          deadline=args.deadline, work_dir=args.work_dir, ecg=args.ecg, quality=args.quality)
    return Demo(options).run()
