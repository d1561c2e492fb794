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
  - ``decoded``: block matching of the decoded left and the right decoded at its own point (what the
    decoder cannot have before it decodes the right view: circular, so also a bound);
  - ``base``: the right view's first :data:`BASE_CHANNELS` coefficients per block sent as today (their
    ideal bits under the bundle's tables counted), the disparity matched between both views truncated
    alike, the rest coded against the side;
  - ``scalable``: the right view at the lowest point sent as today, the disparity from its decoding,
    and the finer point's symbols coded given their base cell and the side (non-nested cells).
  - ``learned``: no disparity at all before decoding. The decoder treats each region's disparity
    (:data:`REGION_BLOCKS`² blocks) as a hidden variable, uniform over 0 … W/4 px in steps of
    :data:`DISPARITY_STEP`: the region's ideal bits are −log2 Σ_d P(d) P(s_region | side warped by
    d), at most the best candidate's bits + log2 |D|. That is the rate a syndrome decoder that learns
    the disparity while it decodes (Varodayan et al., "Wyner–Ziv coding of stereo images with
    unsupervised learning of disparity", 2007: EM between belief propagation and a disparity
    posterior) approaches. The per-channel scales are the oracle's; a decoder would fit them as it
    decodes (EM), so each is charged ½ log2 (blocks) bits, the MDL cost of a parameter (≈ 0.3 %).

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

from fusion_decoder.stereo_tiles import MAX_SYMBOL_BITS, block_bits, laplace_bit_map  # noqa: E402,F401
from training.stereo_binning_export import right_disparity  # noqa: E402,F401

#: coefficients per block of the right view's base in the ``base`` variant (3: the colour DC; 9: + first AC)
BASE_CHANNELS = 9
#: ``learned``: side of a region with one disparity, in transform blocks (4: 32 × 32 px), and the
#: candidates' spacing in pixels; the bound is also computed for each size in LEARNED_REGIONS
REGION_BLOCKS = 4
LEARNED_REGIONS = (1, 2, 4, 8)
DISPARITY_STEP = 0.5
#: a symbol's bits are capped where its probability is below 1e-12 (as in :func:`laplace_bits`)
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "stereo" / "middlebury"


def laplace_bits(symbols: np.ndarray, centre: np.ndarray) -> float:
    """Bits of integer ``symbols`` (M, N) under a discretised Laplacian centred on ``centre`` (M, N),
    one maximum-likelihood scale per channel (the mean absolute residual)."""
    from scipy.stats import laplace

    residual = symbols - centre
    scale = np.maximum(np.abs(residual).mean(axis=1, keepdims=True), 1e-3)
    p = laplace.cdf(residual + 0.5, scale=scale) - laplace.cdf(residual - 0.5, scale=scale)
    return float(-np.log2(np.maximum(p, 1e-12)).sum())


def hidden_candidate_bits(bits: np.ndarray) -> np.ndarray:
    """Per region, −log2 of the mean over candidates of 2^−bits: ``bits`` (D, R) → (R,), the code length
    of a region whose candidate is a hidden variable, uniform over the D (computed around the best)."""
    best = bits.min(axis=0)
    return best - np.log2(np.exp2(best - bits).mean(axis=0))


def held_out_pairs(root: Path, skimage: bool) -> list[tuple[str, np.ndarray]]:
    """(name, pair) of the held-out Middlebury scenes under ``root`` (the stereo-small preset's val and
    test splits), or scikit-image's pair alone."""
    if skimage:
        from ndsc.sources.images import skimage_pair

        return [("skimage-motorcycle", skimage_pair())]
    from training.datasets_stereo import full_pairs
    from training.presets import get_preset

    cfg = get_preset("stereo-small")
    cfg.data.params["root"] = str(root)
    return [p for split in ("val", "test") for p in full_pairs(cfg.data, split)]


def learned_bits(symbols: np.ndarray, left_alone: np.ndarray, right_encoder, gain: np.ndarray,
                 scale: np.ndarray, regions: tuple[int, ...] = LEARNED_REGIONS, step: float = DISPARITY_STEP,
                 batch: int = 16) -> dict[int, float]:
    """Ideal bits of the right view's ``symbols`` (M, h·w) when the decoder knows no disparity: per
    region of r × r blocks (each r in ``regions``), −log2 of the mean over candidate disparities d of
    P(region's symbols | the decoded left warped by d, transformed, scaled by ``gain``)."""
    import torch

    from models.side_information import warp_rows
    from ndsc.sources.images import pad_to_multiple

    stride = right_encoder.info.frame_stride
    h, w = left_alone.shape[-2:]
    hb, wb = -(-h // stride), -(-w // stride)
    candidates = np.arange(0.0, w // 4 + step / 2, step)
    image = torch.from_numpy(np.asarray(left_alone, np.float32))[None]
    per_region: dict[int, list[np.ndarray]] = {r: [] for r in regions}
    for start in range(0, len(candidates), batch):
        ds = torch.tensor(candidates[start:start + batch], dtype=torch.float32)
        sides = warp_rows(image.expand(len(ds), -1, -1, -1), ds.view(-1, 1, 1).expand(-1, h, w), -1).numpy()
        y = right_encoder.analysis(np.stack([pad_to_multiple(v, (stride, stride)) for v in sides]))
        for per_block in block_bits(symbols, y.reshape(len(ds), symbols.shape[0], -1).astype(np.float64) * gain, scale):
            per_block = per_block.reshape(hb, wb)
            for r in regions:
                padded = np.pad(per_block, ((0, -hb % r), (0, -wb % r)))
                per_region[r].append(padded.reshape(padded.shape[0] // r, r, -1, r).sum(axis=(1, 3)).ravel())
    return {r: float(hidden_candidate_bits(np.stack(rows)).sum()) for r, rows in per_region.items()}


def prior_bits(symbols: np.ndarray, tables) -> float:
    """Ideal bits of integer ``symbols`` (K, N) under the bundle's static tables of those K channels
    (an escaped symbol: its escape's bits plus 16, about what the coder writes)."""
    total = 0.0
    for row, table in zip(symbols.astype(np.int64), tables):
        freqs = np.asarray(table.freqs, np.float64)
        index = row - table.offset
        escaped = (index < 0) | (index >= len(freqs) - 1)
        p = freqs[np.where(escaped, len(freqs) - 1, index)] / freqs.sum()
        total += float(-np.log2(p).sum() + 16 * escaped.sum())
    return total


def nested_bits(y: np.ndarray, side: np.ndarray, gain_fine: np.ndarray, gain_base: np.ndarray) -> float:
    """Bits of the fine symbols round(y·gain_fine) given the base symbols round(y·gain_base) and the side
    (all (M, N), in the transform's units): a Laplacian around the side (one scale per channel, fitted
    on the fine reconstruction's residual), its mass over the fine cell within the base cell, divided
    by its mass over the base cell."""
    from scipy.stats import laplace

    fine, base = np.round(y * gain_fine), np.round(y * gain_base)
    scale = np.maximum(np.abs(fine / gain_fine - side).mean(axis=1, keepdims=True), 1e-6)
    cdf = lambda v: laplace.cdf(v - side, scale=scale)
    base_lo, base_hi = (base - 0.5) / gain_base, (base + 0.5) / gain_base
    lo, hi = np.maximum((fine - 0.5) / gain_fine, base_lo), np.minimum((fine + 0.5) / gain_fine, base_hi)
    p = (cdf(hi) - cdf(lo)) / np.maximum(cdf(base_hi) - cdf(base_lo), 1e-300)
    return float(-np.log2(np.clip(p, 1e-12, 1.0)).sum())


def bound(codec_of, pair: np.ndarray, top: str, point: str, base_point: str) -> dict:
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
    # a base the decoder could have before the rest: the right view's first BASE_CHANNELS coefficients
    # (lowest frequencies first: the colour DC and first AC of each 8 × 8 block), sent as today
    latent = right_encoder.info.frame_latent_shape(pair[1].shape)
    base_symbols = symbols.copy()
    base_symbols[BASE_CHANNELS:] = 0
    right_base = codec.runtime.decode_batch([[None, base_symbols.reshape(latent)]], frame_shape=pair[1].shape,
                                            qualities=[[None, codec.qualities[1] or None]])[0][0][1]
    # the left truncated alike, so block matching compares two equally low-passed images
    left_symbols = codec.encoders[0].frame_symbols(pair[0])
    left_symbols[BASE_CHANNELS:] = 0
    left_base = codec.runtime.decode_batch([[left_symbols.reshape(latent), None]], frame_shape=pair[0].shape,
                                           qualities=[[codec.qualities[0] or None, None]])[0][0][0]
    base_bits = prior_bits(symbols[:BASE_CHANNELS], right_encoder.coder.tables[:BASE_CHANNELS])
    sources = {"oracle": (pair[0], pair[1]), "decoded": (left_alone, right_alone), "base": (left_base, right_base)}
    # scalable: the right view at the lowest point is the base (sent as today); the finer point's symbols
    # are coded given their base cell and the side, whose disparity comes from the decoded base
    lowest = codec_of(top, base_point)
    base_payload = lowest.encode(pair)[0][1]
    right_lowest = lowest.decode([None, base_payload], hw)[1]
    d = right_disparity(left_alone, right_lowest)
    side = warp_rows(torch.from_numpy(np.asarray(left_alone, np.float32))[None], d, -1)[0].numpy()
    pad = lambda v: pad_to_multiple(np.asarray(v, np.float32), (stride, stride))[None]
    y_side = right_encoder.analysis(pad(side))[0].reshape(symbols.shape[0], -1).astype(np.float64)
    y_right = right_encoder.analysis(pad(pair[1]))[0].reshape(symbols.shape[0], -1).astype(np.float64)
    gain_base = np.asarray(lowest.encoders[1].gain, np.float64).reshape(-1, 1)
    out["scalable_bits"] = 8 * len(base_payload) + nested_bits(y_right, y_side, gain, gain_base)
    out["scalable_saving"] = 1 - out["scalable_bits"] / out["actual_bits"]
    for name, (a, b) in sources.items():
        d = right_disparity(a, b)
        side = warp_rows(torch.from_numpy(np.asarray(left_alone, np.float32))[None], d, -1)[0].numpy()
        y = right_encoder.analysis(pad_to_multiple(side, (stride, stride))[None])[0]
        centre = (y.reshape(y.shape[0], -1) * gain)
        if name == "oracle":  # the learned variant uses the oracle's per-channel scales
            oracle_scale = np.maximum(np.abs(symbols - centre).mean(axis=1, keepdims=True), 1e-3)
            oracle_centre = centre
        if name == "base":  # the base as today's coder codes it, the rest against the side
            out[f"{name}_bits"] = base_bits + laplace_bits(symbols[BASE_CHANNELS:], centre[BASE_CHANNELS:])
        else:
            out[f"{name}_bits"] = laplace_bits(symbols, centre)
        out[f"{name}_saving"] = 1 - out[f"{name}_bits"] / out["actual_bits"]
        out[f"{name}_saving_vs_unconditional"] = 1 - out[f"{name}_bits"] / out["unconditional_bits"]
    # the fast per-symbol formula reproduces the scipy one (the oracle's bits, its own centre and scales)
    assert np.isclose(laplace_bit_map(symbols, oracle_centre, oracle_scale).sum(), out["oracle_bits"], rtol=1e-6)
    scales_bits = 0.5 * np.log2(symbols.shape[1]) * symbols.shape[0]  # MDL: ½ log2 N per fitted scale
    for r, bits in learned_bits(symbols, left_alone, right_encoder, gain, oracle_scale).items():
        out[f"learned{r}_bits"] = bits + scales_bits
        out[f"learned{r}_saving"] = 1 - bits / out["actual_bits"]
    out["learned_bits"], out["learned_saving"] = out[f"learned{REGION_BLOCKS}_bits"], out[f"learned{REGION_BLOCKS}_saving"]
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
    pairs = held_out_pairs(args.root, args.skimage)
    names = load_bundle(bundle).quality_names
    codecs: dict[tuple[str, str], StereoCodec] = {}
    codec_of = lambda a, b: codecs.setdefault((a, b), StereoCodec(bundle, quality=(a, b)))
    rows = []
    for scene, pair in pairs:
        for q in names:
            r = {"scene": scene, **bound(codec_of, pair, names[-1], q, names[0])}
            rows.append(r)
            print(f"{scene} {r['point']}: right {r['actual_bits'] / r['dims']:.4f} bit/dim (per-scene Laplacian "
                  f"without side {r['unconditional_bits'] / r['dims']:.4f}); ideal conditional saving oracle "
                  f"{100 * r['oracle_saving']:.1f} %, decoded {100 * r['decoded_saving']:.1f} %, base "
                  f"{100 * r['base_saving']:.1f} %, learned "
                  + ", ".join(f"{100 * r[f'learned{k}_saving']:.1f} %" for k in LEARNED_REGIONS) + " "
                  f"({100 * r['decoded_saving_vs_unconditional']:.1f} % of the side-less Laplacian)", flush=True)
    for q in names:
        sel = [r for r in rows if r["point"].endswith(f"/{q}")]
        total, plain = (sum(r[k] for r in sel) for k in ("actual_bits", "unconditional_bits"))
        oracle, decoded, base, scalable = (sum(r[k] for r in sel) for k in ("oracle_bits", "decoded_bits",
                                                                              "base_bits", "scalable_bits"))
        learned = {k: sum(r[f"learned{k}_bits"] for r in sel) for k in LEARNED_REGIONS}
        print(f"all scenes {names[-1]}/{q}: learned disparity (regions of "
              + ", ".join(f"{k}×{k} blocks {100 * (1 - b / total):.1f} %" for k, b in learned.items()) + ")")
        print(f"all scenes {names[-1]}/{q}: saving oracle {100 * (1 - oracle / total):.1f} %, decoded "
              f"{100 * (1 - decoded / total):.1f} %, base {100 * (1 - base / total):.1f} %, scalable "
              f"{100 * (1 - scalable / total):.1f} % of the payload; decoded "
              f"{100 * (1 - decoded / plain):.1f} % of the side-less per-scene Laplacian "
              f"({100 * (1 - plain / total):+.1f} % vs the payload)")
    if args.json:
        args.json.write_text(json.dumps({"bundle": bundle, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
