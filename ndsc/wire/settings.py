"""Settings dataclasses filled from flags and environment alike (both ends of the wire).

A field declares its environment variable and help with :func:`setting`; then
:func:`add_arguments` makes one ``--flag`` per field and :func:`from_args` fills the
dataclass with precedence flag > environment > default. So ``--help``, docker compose
(environment) and tests configure the same object.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from typing import Any, Mapping


def setting(env: str, help: str, default: Any = None) -> Any:
    """A dataclass field bound to environment variable ``env``."""
    return dataclasses.field(default=default, metadata={"env": env, "help": help})


def _kind(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _convert(f: dataclasses.Field, raw: str) -> Any:
    kind = _kind(f)
    if kind.startswith("bool"):
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{f.metadata['env']}: expected a boolean, got {raw!r}")
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return raw


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per field of ``cls`` (default None so the environment can fill it)."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} [env {f.metadata['env']}; default {f.default}]"
        if _kind(f).startswith("bool"):
            parser.add_argument(flag, dest=f.name, action="store_const", const=True, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, type=functools.partial(_convert, f), help=help_text)


def env_help(cls: type) -> str:
    """The environment variables of ``cls``, for ``--help`` epilogs."""
    return (
        "Every flag can also be set by environment: "
        + ", ".join(f"{f.metadata['env']} (--{f.name.replace('_', '-')})" for f in dataclasses.fields(cls))
        + "."
    )


def from_args(
    cls: type, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Any:
    """``cls`` from flags, then environment, then defaults; ``overrides`` win over all."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None) if args is not None else None
        if value is None and environ.get(f.metadata["env"]) not in (None, ""):
            value = _convert(f, environ[f.metadata["env"]])
        if value is not None:
            values[f.name] = value
    values.update(overrides)
    return cls(**values)
