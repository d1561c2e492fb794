"""What binning could save on a right view: its symbols' ideal conditional rate given the left view.

For each held-out scene and each right-view point, with the left view coded at the top point and
decoded alone (no right view, so nothing of the right leaks in):

* ``actual``: the right view's payload bits (what it sends today, ANS on the factorised prior);
* ``conditional``: −log2 P(s | side) summed over the right view's symbols s, where the side is the
  right encoder's transform (scaled by the point's gains) of the decoded left view warped into the
  right, and P a discretised Laplacian centred on it with one ML scale per channel fitted on the
  scene itself. That is the Slepian–Wolf rate an ideal syndrome code would need (no overhead, no
  failed decodes), with two disparity estimates:

  - ``oracle``: block matching of the *original* pair, so an upper bound on the saving;
  - ``decoded``: block matching of the decoded left and the right decoded at its own point, what a
    two-pass scheme would have after a right-view base layer (costing bits not counted here).

Distortion is untouched by lossless binning, so a rate saving of X % at every point is a BD-rate of
−X % on top of what the decoder's fusion gives. Usage::

    python benchmarks/stereo_wz_bound.py                      # held-out scenes (needs ../shared)
    python benchmarks/stereo_wz_bound.py --skimage             # scikit-image's pair only
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "stereo" / "middlebury"


def laplace_bits(symbols: np.ndarray, centre: np.ndarray) -> float:
    """Bits of integer ``symbols`` (M, N) under a discretised Laplacian centred on ``centre`` (M, N),
    one maximum-likelihood scale per channel (the mean absolute residual)."""
    from scipy.stats import laplace

    residual = symbols - centre
    scale = np.maximum(np.abs(residual).mean(axis=1, keepdims=True), 1e-3)
    p = laplace.cdf(residual + 0.5, scale=scale) - laplace.cdf(residual - 0.5, scale=scale)
    return float(-np.log2(np.maximum(p, 1e-12)).sum())


def right_disparity(left: np.ndarray, right: np.ndarray):
    """Sub-pixel disparity of the right view (1, H, W): right(y, x) ≈ left(y, x + d)."""
    import torch

    from models.side_information import stereo_disparities

    grey = lambda v: torch.from_numpy(np.asarray(v, np.float32).mean(axis=0) / 255.0)[None]
    _, (_, d) = stereo_disparities(grey(left), grey(right), max_disparity=left.shape[-1] // 4)
    return d


def bound(codec_of, pair: np.ndarray, top: str, point: str) -> dict:
    """Actual and ideal conditional bits of the right view at ``point`` beside a left at ``top``."""
    import torch

    from models.side_information import warp_rows
    from ndsc.sources.images import pad_to_multiple

    codec = codec_of(top, point)
    hw = pair.shape[-2:]
    payloads, _ = codec.encode(pair)
    left_alone = codec.decode([payloads[0], None], hw)[0]
    right_alone = codec.decode([None, payloads[1]], hw)[1]
    right_encoder = codec.encoders[1]
    symbols = right_encoder.frame_symbols(pair[1]).astype(np.float64)
    stride = right_encoder.info.frame_stride
    gain = np.asarray(right_encoder.gain, np.float64).reshape(-1, 1)
    out = {"point": f"{top}/{point}", "actual_bits": 8 * len(payloads[1]), "dims": int(np.prod(pair[1].shape)),
           # the same model without side information (centred on 0, scales fitted on the scene too): what
           # the per-scene fit alone is worth, so the side information's share is the difference
           "unconditional_bits": laplace_bits(symbols, np.zeros_like(symbols))}
    for name, (a, b) in {"oracle": (pair[0], pair[1]), "decoded": (left_alone, right_alone)}.items():
        d = right_disparity(a, b)
        side = warp_rows(torch.from_numpy(np.asarray(left_alone, np.float32))[None], d, -1)[0].numpy()
        y = right_encoder.analysis(pad_to_multiple(side, (stride, stride))[None])[0]
        centre = (y.reshape(y.shape[0], -1) * gain)
        out[f"{name}_bits"] = laplace_bits(symbols, centre)
        out[f"{name}_saving"] = 1 - out[f"{name}_bits"] / out["actual_bits"]
        out[f"{name}_saving_vs_unconditional"] = 1 - out[f"{name}_bits"] / out["unconditional_bits"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="default: the shipped stereo-middlebury")
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="Middlebury scenes (the preset's split)")
    ap.add_argument("--skimage", action="store_true", help="scikit-image's pair instead of the held-out scenes")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    import torch

    from ndsc.bundle import load_bundle
    from ndsc.bundles import default_bundle
    from training.stereo_eval import StereoCodec

    torch.set_num_threads(1)
    bundle = args.bundle or str(default_bundle("stereo-middlebury"))
    if args.skimage:
        from ndsc.sources.images import skimage_pair

        pairs = [("skimage-motorcycle", skimage_pair())]
    else:
        from training.datasets_stereo import full_pairs
        from training.presets import get_preset

        cfg = get_preset("stereo-small")
        cfg.data.params["root"] = str(args.root)
        pairs = [p for split in ("val", "test") for p in full_pairs(cfg.data, split)]
    names = load_bundle(bundle).quality_names
    codecs: dict[tuple[str, str], StereoCodec] = {}
    codec_of = lambda a, b: codecs.setdefault((a, b), StereoCodec(bundle, quality=(a, b)))
    rows = []
    for scene, pair in pairs:
        for q in names:
            r = {"scene": scene, **bound(codec_of, pair, names[-1], q)}
            rows.append(r)
            print(f"{scene} {r['point']}: right {r['actual_bits'] / r['dims']:.4f} bit/dim (per-scene Laplacian "
                  f"without side {r['unconditional_bits'] / r['dims']:.4f}); ideal conditional saving oracle "
                  f"{100 * r['oracle_saving']:.1f} %, decoded {100 * r['decoded_saving']:.1f} % "
                  f"({100 * r['decoded_saving_vs_unconditional']:.1f} % of the side-less Laplacian)", flush=True)
    for q in names:
        sel = [r for r in rows if r["point"].endswith(f"/{q}")]
        total, plain = (sum(r[k] for r in sel) for k in ("actual_bits", "unconditional_bits"))
        oracle, decoded = (sum(r[k] for r in sel) for k in ("oracle_bits", "decoded_bits"))
        print(f"all scenes {names[-1]}/{q}: saving oracle {100 * (1 - oracle / total):.1f} %, decoded "
              f"{100 * (1 - decoded / total):.1f} % of the payload; decoded {100 * (1 - decoded / plain):.1f} % "
              f"of the side-less per-scene Laplacian ({100 * (1 - plain / total):+.1f} % vs the payload)")
    if args.json:
        args.json.write_text(json.dumps({"bundle": bundle, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
