#!/usr/bin/env python
"""Build the bundles shipped in ``ndsc/bundles/`` (the demo's default bundle).

Usage::

    python scripts/build_default_bundles.py                    # every default bundle
    python scripts/build_default_bundles.py --name ecg-synth-quick --steps 600

Trains the named preset on synthetic data only (nothing downloaded, nothing from
../shared/data), exports the bundle, evaluates it with real bits and records the
figures in its manifest. One torch thread: the build machine is shared.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: name → (preset, steps). Kept small: a few hundred KB, trained in about a minute on 2 cores.
DEFAULTS = {"ecg-synth-quick": ("ecg-synth-quick", 600)}


def build(name: str, steps: int | None = None) -> dict:
    import torch

    from training.pipeline import train_and_export
    from training.presets import get_preset

    torch.set_num_threads(1)
    preset, default_steps = DEFAULTS[name]
    cfg = get_preset(preset).replace(steps=steps or default_steps, progress=False)
    out = REPO / "ndsc" / "bundles" / name
    if out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    path, report = train_and_export(cfg, out)
    size = sum(p.stat().st_size for p in path.iterdir())
    return {"name": name, "path": str(path.relative_to(REPO)), "bytes": size, "seconds": round(time.time() - t0, 1),
            "bits_per_sample_sum": report["bits_per_sample_sum"], "overall_prd_percent": report["overall_prd_percent"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", action="append", choices=sorted(DEFAULTS), help="bundle to build (repeatable)")
    parser.add_argument("--steps", type=int, help="override training steps")
    args = parser.parse_args(argv)
    for name in args.name or sorted(DEFAULTS):
        print(json.dumps(build(name, args.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
