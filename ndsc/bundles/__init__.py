"""Model bundles shipped with the package, for the demo and first runs.

Built by ``scripts/build_default_bundles.py``, ``scripts/build_ecg_bundle.py`` and
``scripts/build_stereo_bundle.py``; each
sits in ``ndsc/bundles/<name>/`` and is verified by :func:`ndsc.bundle.load_bundle`
like any other bundle.
"""

from __future__ import annotations

from pathlib import Path

from ndsc.bundle import BundleModified, BundleNotFound, load_bundle

BUNDLES_DIR = Path(__file__).resolve().parent
#: the demo's bundle: 4 nodes × 3 leads of real 12-lead ECG at 500 Hz (preset ``ecg-12lead``,
#: trained on PhysioNet records by ``scripts/build_ecg_bundle.py``; replays pydicom's ECG)
DEFAULT_BUNDLE = "ecg-12lead"
#: the stereo demo's and ``ndsc stereo-eval``'s bundle: two cameras, five quality points (preset
#: ``stereo-small``, trained on the Middlebury scenes by ``scripts/build_stereo_bundle.py``)
STEREO_BUNDLE = "stereo-middlebury"


def shipped_bundles() -> list[str]:
    """Names of the bundles in this package."""
    return sorted(p.parent.name for p in BUNDLES_DIR.glob("*/manifest.json"))


def default_bundle(name: str = DEFAULT_BUNDLE, root: Path = BUNDLES_DIR) -> Path:
    """Path of the shipped bundle ``name``, verified byte for byte.

    Raises:
        BundleNotFound: the package holds no such bundle (a trimmed install or a wrong name).
        BundleModified: its files differ from its manifest (edited, truncated, or a Git LFS pointer).
        Nothing substitutes another bundle: serving code never trains one.
    """
    path = root / name
    if not (path / "manifest.json").is_file():
        shipped = sorted(p.parent.name for p in root.glob("*/manifest.json"))
        raise BundleNotFound(
            f"the shipped bundle {name!r} is missing from {root} (shipped: {', '.join(shipped) or 'none'})"
        )
    try:
        load_bundle(path)
    except BundleModified as exc:
        raise BundleModified(f"the shipped bundle {name!r} fails its check: {exc}") from exc
    except BundleNotFound as exc:
        raise BundleNotFound(f"the shipped bundle {name!r} is incomplete: {exc}") from exc
    return path
