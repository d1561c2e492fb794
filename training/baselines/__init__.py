"""Named baselines for the study: every method codes real bytes in the same harness.

A baseline is registered under a name (``separate``, ``joint-b0``, ``sq``, ``dvqvae`` …) so
a sweep config can name it. All share :class:`Baseline`'s lifecycle: ``fit`` on the
training split, ``compress`` windows into per-source payload bytes, ``decompress`` all
sources' bytes jointly. The harness measures rate as 8 × the bytes written.
"""
from training.baselines.base import Baseline, build_baseline, known_baselines, register_baseline

__all__ = ["Baseline", "build_baseline", "known_baselines", "register_baseline"]
