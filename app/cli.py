"""The ``ndsc`` command line.

Subcommands live next to the code they drive (``training/cli.py``, ``edge_encoder/cli.py``,
``fusion_decoder/cli.py``, ``app/demo.py``). Each of those modules imports only argparse at
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
    "app.demo_cli",
    "training.study_cli",
    "training.ecg_cli",
    "training.stereo_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndsc", description="Neural distributed source coding for sensor networks.")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING; default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (default: one line)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not an absent command module
                raise
            continue
        module.configure(sub)
    for command in sub.choices.values():  # `ndsc demo --debug` as well as `ndsc --debug demo`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error (default: one line)")
        name_defaults(command)
    return parser


def name_defaults(parser: argparse.ArgumentParser) -> None:
    """Append "(default: X)" from the option's real default to every help text that does not name it.

    So ``--help`` cannot drift from what runs: the value shown is the one argparse will use.
    """
    for action in parser._actions:
        default = action.default
        if (action.help in (None, argparse.SUPPRESS) or default in (None, False, argparse.SUPPRESS)
                or isinstance(default, list) or "%(default)" in action.help or str(default) in action.help):
            continue
        action.help += " (default: %(default)s)"


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; an error is one line on stderr (what is wrong; what to do), or a traceback with --debug."""
    from ndsc.errors import one_line

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes one line
        if args.debug:
            raise
        line, status = one_line(exc)
        print(f"ndsc {args.command}: error: {line}", file=sys.stderr, flush=True)
        return status


if __name__ == "__main__":
    sys.exit(main())
