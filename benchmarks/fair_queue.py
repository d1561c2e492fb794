#!/usr/bin/env python
"""The decode queue's cost per window: ``FairQueue`` (per-group FIFOs served in turn) against the
``asyncio.Queue`` it replaced, measured alternately in the same run.

Why it exists: the pipeline puts and gets every window through this queue on the event loop, so
fairness across groups must not cost the decoder's hot path. Each round puts ``--batch`` windows
of ``--groups`` groups (round-robin, as concurrent streams release them) and takes them as the
decode loop forms a batch (``get_nowait`` + ``task_done``); this prints µs per window (median of
``--repeats`` rounds of ``--windows`` windows) and the ratio fair/FIFO.

Usage::

    python benchmarks/fair_queue.py [--windows 100000] [--groups 5] [--batch 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusion_decoder.fairqueue import FairQueue  # noqa: E402


class _Window:
    """What the queue sees of an aligned window: its group."""

    __slots__ = ("group",)

    def __init__(self, group: str):
        self.group = group


async def _round(queue, windows: list[_Window], batch: int) -> float:
    """µs per window to put and take ``windows`` through ``queue`` in batches of ``batch``."""
    t0 = time.perf_counter()
    for start in range(0, len(windows), batch):
        chunk = windows[start:start + batch]
        for w in chunk:
            await queue.put(w)
        for _ in chunk:
            queue.get_nowait()
            queue.task_done()
    return (time.perf_counter() - t0) / len(windows) * 1e6


def measure(windows: int, groups: int, batch: int, repeats: int) -> dict:
    items = [_Window(f"g{k % groups}") for k in range(windows)]
    capacity = max(8 * batch, 256)  # the pipeline's
    times: dict[str, list[float]] = {"fifo": [], "fair": []}

    async def run() -> None:
        for _ in range(repeats):  # alternately, so both see the same machine
            times["fifo"].append(await _round(asyncio.Queue(capacity), items, batch))
            times["fair"].append(await _round(FairQueue(lambda w: w.group, capacity), items, batch))

    asyncio.run(run())
    us = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"windows": windows, "groups": groups, "batch": batch, "us_per_window": us,
            "fair_over_fifo": us["fair"] / us["fifo"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64, help="windows per decode batch (the decoder's --max-batch)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    report = measure(args.windows, args.groups, args.batch, args.repeats)
    us = report["us_per_window"]
    print(f"µs per window (put + get, median of {args.repeats} rounds of {args.windows}, {args.groups} groups): "
          f"asyncio.Queue {us['fifo']:.2f}, FairQueue {us['fair']:.2f}, fair/FIFO {report['fair_over_fifo']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
