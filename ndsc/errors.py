"""Mistakes a user can fix, told in one line: what is wrong and what to do.

The CLI (:func:`app.cli.main`) turns any exception that reaches it into one line on
stderr and a non-zero exit; ``--debug`` shows the traceback instead. :func:`one_line`
adds the "what to do" for the error kinds users meet (bundles, sources, busy ports);
anything else is reported as a probable bug, with a pointer to ``--debug``.
"""

from __future__ import annotations

import errno

#: exit status of a mistake in the command line, a bundle, a source or a busy port
EXIT_USAGE = 2
#: exit status of an unexpected error (a bug until shown otherwise)
EXIT_BUG = 1


class UsageError(Exception):
    """A mistake in what the user asked for; the message says what is wrong and what to do."""

    def __init__(self, what: str, todo: str):
        super().__init__(f"{what}; {todo}")
        self.what = what
        self.todo = todo


def _flat(text: str) -> str:
    return " ".join(str(text).split())


def _hint(exc: BaseException) -> tuple[str, int] | None:
    """("what to do", exit status) for error kinds a user causes and can fix, else None."""
    from ndsc.bundle import BundleError, BundleModified, BundleNotFound
    from ndsc.sources.base import SourceError

    if isinstance(exc, UsageError):
        return "", EXIT_USAGE
    if isinstance(exc, BundleNotFound):
        return (
            "give the directory of an exported bundle (`ndsc train --out DIR` writes one; "
            "the shipped ones are in ndsc/bundles/)"
        ), EXIT_USAGE
    if isinstance(exc, BundleModified):
        return (
            "a bundle is verified byte for byte: restore its files as exported "
            "(for a shipped bundle: git checkout -- ndsc/bundles), or export it again"
        ), EXIT_USAGE
    if isinstance(exc, BundleError):
        return "check the bundle directory (`ndsc eval DIR` verifies one)", EXIT_USAGE
    if isinstance(exc, SourceError):
        return "fix the source spec (formats: `ndsc edge --help`, docs/ecg.md)", EXIT_USAGE
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return "another process holds that port: pick another one, or 0 for a free one", EXIT_USAGE
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return "check the path", EXIT_USAGE
    return None


def one_line(exc: BaseException) -> tuple[str, int]:
    """The one line that reports ``exc`` (what is wrong; what to do) and the exit status."""
    hint = _hint(exc)
    if hint is None:
        return (
            f"unexpected {type(exc).__name__}: {_flat(str(exc))} (probably a bug; "
            f"run again with --debug for the traceback)"
        ), EXIT_BUG
    todo, status = hint
    text = _flat(str(exc)) or type(exc).__name__
    return (f"{text}; {todo}" if todo else text), status
