"""What ``ndsc demo`` can be asked for, and its defaults (no heavy imports: ``--help`` reads them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DemoOptions:
    """What the user asked for."""

    bundle: str | None = None        # bundle dir; default: the shipped DEFAULT_BUNDLE (ecg-12lead)
    source: str | None = None        # one source spec for every node; default: the bundle's replay spec
    nodes: int | None = None         # first K sources only; default: all of the bundle's sources
    duration: float | None = None    # stop by itself after this many seconds
    fast: bool = False               # nodes send as fast as possible instead of real time
    audit_every: int = 10            # 1 in N windows audited for distortion
    flush_interval: float = 0.0      # edge batching interval, seconds
    deadline: float = 3.0            # decoder's aligner deadline, seconds
    refresh: float = 1.0             # seconds between table redraws
    work_dir: str | None = None      # logs go here (kept); default: a temporary folder, removed at the end
    ecg: str | None = None           # a real ECG record (WFDB path, .dcm, 'pydicom'): one node per lead group
    quality: str | None = None       # operating point of a variable-rate bundle for every node; default: its default
    stereo: bool = False             # two camera nodes (shipped stereo bundle), whole frames, PSNR/MS-SSIM per view


#: the defaults ``ndsc demo`` runs with (compose runs the same: tests/deploy asserts it)
DEFAULTS = DemoOptions()
