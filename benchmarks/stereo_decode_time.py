"""Seconds to decode one whole stereo pair (scikit-image's Motorcycle, 741 × 500) per bundle, one CPU thread.

Encodes the pair once, then times ``StereoCodec.decode`` (entropy decoding, synthesis, side information,
learned fusion: what serving runs per window) ``--runs`` times per bundle, in one process, so bundles
compare on the same machine state::

    python benchmarks/stereo_decode_time.py ndsc/bundles/stereo-middlebury OTHER_BUNDLE
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--quality", default="3")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    from ndsc.sources.images import skimage_pair
    from training.stereo_eval import StereoCodec

    torch.set_num_threads(1)
    pair = skimage_pair()
    for bundle in args.bundles:
        codec = StereoCodec(bundle, quality=args.quality)
        payloads, _ = codec.encode(pair)
        seconds = []
        for _ in range(args.runs):
            start = time.perf_counter()
            codec.decode(payloads, pair.shape[-2:])
            seconds.append(time.perf_counter() - start)
        print(f"{bundle}: decode {' '.join(f'{s:.2f}' for s in seconds)} s per pair (quality {args.quality})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
