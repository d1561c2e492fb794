"""The ``ndsc`` command line.

Subcommands live next to the code they drive (``training/cli.py``, ``edge_encoder/cli.py``,
``fusion_decoder/cli.py``, ``ndsc/demo.py``). Each of those modules imports only argparse at
module level and imports its heavy dependencies inside the handler, so ``ndsc edge``
never loads torch.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: modules that define ``configure(subparsers)``; each adds its subcommands.
COMMAND_MODULES = (
    "training.cli",
    "edge_encoder.cli",
    "fusion_decoder.cli",
    "ndsc.demo_cli",
    "training.study_cli",
    "training.ecg_cli",
    "training.stereo_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndsc", description="Neural distributed source coding for sensor networks.")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not an absent command module
                raise
            continue
        module.configure(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
