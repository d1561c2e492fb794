"""Model bundles shipped with the package, for the demo and first runs.

Built by ``scripts/build_default_bundles.py`` (train a preset, export, evaluate); each
sits in ``ndsc/bundles/<name>/`` and is verified by :func:`ndsc.bundle.load_bundle`
like any other bundle.
"""
from __future__ import annotations

from pathlib import Path

from ndsc.bundle import BundleError, load_bundle

BUNDLES_DIR = Path(__file__).resolve().parent
#: the demo's bundle: 4 nodes × 3 leads of real 12-lead ECG at 500 Hz (preset ``ecg-12lead``,
#: trained on PhysioNet records by ``scripts/build_ecg_bundle.py``; replays pydicom's ECG)
DEFAULT_BUNDLE = "ecg-12lead"


def shipped_bundles() -> list[str]:
    """Names of the bundles in this package."""
    return sorted(p.parent.name for p in BUNDLES_DIR.glob("*/manifest.json"))


def default_bundle(name: str = DEFAULT_BUNDLE) -> Path | None:
    """Path of the shipped bundle ``name`` if present and intact, else None.

    The caller decides what to do when it is missing (the demo trains one with
    ``ndsc train``; serving code must not import training).
    """
    path = BUNDLES_DIR / name
    if not (path / "manifest.json").is_file():
        return None
    try:
        load_bundle(path)
    except BundleError:
        return None
    return path
