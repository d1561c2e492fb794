"""``ndsc study --config CONFIG``: run the sweeps (resuming from cache) and write the report."""
from __future__ import annotations

import argparse


def configure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="baselines, β_MI sweeps, ablations and CV; writes an R–D report")
    p.add_argument("--config", required=True, help="study YAML (configs/study-small.yaml, configs/study-full.yaml)")
    p.add_argument("--out", help="report folder (default: the config's `out`)")
    p.add_argument("--cache", help="result cache folder (default: the config's `cache`)")
    p.add_argument("--only", action="append", default=[], metavar="DATASET", help="run only this data set (repeatable)")
    p.add_argument("--force", action="store_true", help="recompute runs even if cached")
    p.add_argument("--report-only", action="store_true", help="build the report from cached runs; train nothing")
    p.add_argument("--device", help="torch device the networks train on: auto, cpu, cuda, cuda:N "
                                    "(default: the config's `device`; not part of the cache key)")
    p.set_defaults(handler=_study)


def _study(args) -> int:
    import time

    from training.study.config import StudyConfig
    from training.study.report import build_report
    from training.study.runner import run_study

    cfg = StudyConfig.load(args.config)
    if args.out:
        cfg.out = args.out
    if args.cache:
        cfg.cache = args.cache
    if args.device:
        cfg.device = args.device
    start = time.perf_counter()
    executor = None
    if args.report_only:
        def executor(run):  # noqa: E306 - only reached for runs missing from the cache
            raise RuntimeError("not in cache (--report-only)")
    records = run_study(cfg, only=args.only or None, force=args.force,
                        **({"executor": executor} if executor else {}))
    command = " ".join(["ndsc study --config", args.config, *(f"--only {o}" for o in args.only),
                        *(["--force"] if args.force else []), *(["--report-only"] if args.report_only else []),
                        *(["--device", args.device] if args.device else [])])
    path = build_report(cfg, records, command, time.perf_counter() - start)
    failed = sum(1 for r in records if "error" in r)
    print(f"{len(records)} runs ({sum(1 for r in records if r.get('cached'))} from cache, {failed} failed); report {path}")
    return 1 if failed and not args.report_only else 0
