"""Ranges every client-sent field must fall in (the wire contract, see ``docs/wire.md``).

Both ends import these, so an edge refuses locally what the decoder would refuse. The
integer bounds are 2^53 − 1 so that every index is exact in an IEEE double (JavaScript
clients, JSON tooling) and fits SQLite's signed 64-bit INTEGER with room for arithmetic.
"""

from __future__ import annotations

import re

#: largest window index (and seq) on the wire: 2^53 − 1 (Number.MAX_SAFE_INTEGER)
MAX_WINDOW_INDEX = (1 << 53) - 1
MAX_SEQ = (1 << 53) - 1
#: group and node names: 1–64 characters of [A-Za-z0-9._:-], starting with a letter or digit
#: (they become metric labels, log fields and the x-ndsc-group routing header)
MAX_NAME_CHARS = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def name_problem(name: str, what: str) -> str | None:
    """Why ``name`` is not a valid group/node name (None when it is)."""
    if _NAME.fullmatch(name):
        return None
    shown = name[:32] + ("…" if len(name) > 32 else "")
    return (
        f"{what} {shown!r} ({len(name)} characters) is not 1-{MAX_NAME_CHARS} characters of "
        f"[A-Za-z0-9._:-] starting with a letter or digit"
    )
