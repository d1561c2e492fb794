"""Registration by import: modality modules register readers, models and data sets."""
from __future__ import annotations


def import_optional(*modules: str) -> None:
    """Import each module for its registration side effect.

    A module that does not exist is skipped (a slim install may leave a modality out);
    a module that exists but fails to import raises, so real errors are never hidden.
    """
    for module in modules:
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
