"""Real syndrome bits for a right view decoded beside its left view, with no disparity known beforehand.

For each held-out scene (the scenes of ``benchmarks/stereo_wz_bound.py``) and right-view point, the
left view coded at the top point and decoded alone: tiles of the right view's symbols are syndrome
coded (:mod:`training.stereo_binning`: bit planes most significant first, LDPC-accumulate syndromes
requested until BP converges and the plane's CRC-16 matches, escapes raw) and decoded from the
decoded left view with a per-block disparity posterior learned from the decoded bits. Every tile's
decoded symbols are asserted equal to the encoder's. Per tile it reports

* ``real``: every bit the decoder received (syndrome + CRC + escapes + raw planes + wasted requests);
* ``ans``: the tile's symbols' ideal bits under the bundle's static tables (what today's ANS payload
  spends on them; pooled over the scene the table bits are compared with the actual payload bytes);
* ``learned``: the ideal bound of stereo_wz_bound.py (1 × 1-block regions, the oracle's exact scales);
* ``model``: the ideal bits under the decoder's own model (quantised scales, index clipping, uniform
  mixture) — the gap real − model is the syndrome code's and the per-bit LLRs' loss.

The per-channel Laplacian scales are the decoder's: ``--scales calibrated`` (the default) fits them
once per point on scikit-image's Motorcycle pair (not a held-out scene) against its left view warped
by the true disparity, and uses them on every scene, so nothing is sent for them. ``--scales oracle``
fits them on each scene itself and counts them as 8 bits × 192 side bits — which the edge could not
compute without the left view, so that is a bound on what better scales are worth, not a codec.
``--scales adaptive`` starts from the calibrated scales and refits them after each decoded tile
from the decoded symbols and each block's most likely disparity (decoder side, nothing sent).
Tiles are a fixed subset (``--rows`` tile rows evenly spaced, ``--cols`` tiles per row evenly
spaced) to bound the runtime. Usage::

    python benchmarks/stereo_binning.py --points 3                  # held-out scenes (needs ../shared)
    python benchmarks/stereo_binning.py --skimage --points 3        # scikit-image's pair
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stereo_wz_bound import DEFAULT_ROOT, block_bits, held_out_pairs, hidden_candidate_bits, prior_bits  # noqa: E402

from training.stereo_binning_export import calibrated_scale, oracle_scale  # noqa: E402

#: tile side in transform blocks (8: 64 × 64 px, n = 192 · 64 = 12 288 symbols per plane)
TILE_BLOCKS = 8
#: index bits: symbols −64 … 63 (the bundle's right-view symbols measured within ±55 at point 3; at point
#: 5, 8 bits: with 7, 20–64 escapes a tile at 30 bits each cost Pipes more than binning saved)
INDEX_BITS = 7


def candidate_centres(left_alone: np.ndarray, y0: int, rows: int, cols: list[int], right_encoder, gain: np.ndarray,
                      step: float, batch: int = 16, tile_blocks: int = TILE_BLOCKS) -> np.ndarray:
    """(D, C, len(cols)·T²) side per candidate disparity for the tiles of one tile row: the strip
    ``y0 … y0 + rows`` px of the decoded left, warped by d (rows are warped independently, so the
    strip is exact), through the right encoder's analysis, times the gains."""
    import torch

    from models.side_information import warp_rows
    from ndsc.sources.images import pad_to_multiple

    stride = right_encoder.info.frame_stride
    w = left_alone.shape[-1]
    candidates = np.arange(0.0, w // 4 + step / 2, step)
    strip = torch.from_numpy(np.asarray(left_alone, np.float32)[:, y0:y0 + rows])[None]
    t = tile_blocks
    out = []
    for start in range(0, len(candidates), batch):
        ds = torch.tensor(candidates[start:start + batch], dtype=torch.float32)
        sides = warp_rows(strip.expand(len(ds), -1, -1, -1), ds.view(-1, 1, 1).expand(-1, rows, w), -1).numpy()
        y = right_encoder.analysis(np.stack([pad_to_multiple(v, (stride, stride)) for v in sides]))
        y = y * gain.reshape(1, -1, 1, 1)
        out.append(np.stack([y[:, :, :, c * t:(c + 1) * t].reshape(len(ds), y.shape[1], -1) for c in cols], axis=1))
    return np.concatenate(out).astype(np.float64)  # (D, tiles, C, T²)


def learned_tile_bits(symbols: np.ndarray, centres: np.ndarray, scale: np.ndarray) -> float:
    """stereo_wz_bound's ``learned`` bound on one tile, 1 × 1-block regions: Σ_blocks −log2 mean_d 2^−bits_d."""
    return float(hidden_candidate_bits(block_bits(symbols, centres, scale)).sum())


#: ``--decoder``: BP alone (the ldpc package's), the same BP in torch (float32, on the GPU where there is
#: one), or BP then ordered-statistics decoding where BP fails
DECODERS = ("bp", "bp-torch", "bp-osd")


def syndrome_decoder(name: str):
    """The BP function named by ``--decoder``, and the bits of the plane CRCs it needs: BP-OSD returns a
    syndrome-consistent word at every attempt, so its planes carry 32."""
    from fusion_decoder.belief import bp_ldpc, bp_osd
    from training.stereo_binning import CHECK_BITS

    if name == "bp-torch":
        from functools import partial

        import torch

        from fusion_decoder.belief_torch import bp_torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return partial(bp_torch, device=device, dtype=torch.float32), CHECK_BITS
    return {"bp": (bp_ldpc, CHECK_BITS), "bp-osd": (bp_osd, 32)}[name]


#: ``--scales adaptive``: weight of the calibrated scales, in blocks, against the residuals decoded so far
ADAPT_PRIOR_BLOCKS = 64


def tile_sample(full_rows: list[int], n_tile_cols: int, n_rows: int, n_cols: int, every: int = 0,
                phase: int = 0) -> dict[int, list[int]]:
    """The tiles coded, {tile row: tile columns}: ``n_rows`` × ``n_cols`` evenly spaced, or with ``every``
    every ``every``-th tile of the full rows in raster order from the ``phase``-th (a systematic sample
    of the whole scene; another phase is another sample of the same size)."""
    if every:
        return {r: [col for col in range(n_tile_cols) if (k * n_tile_cols + col) % every == phase % every]
                for k, r in enumerate(full_rows)}
    rows = sorted({full_rows[i] for i in np.linspace(0, len(full_rows) - 1, n_rows).round().astype(int)})
    cols = sorted({int(i) for i in np.linspace(0, n_tile_cols - 1, n_cols).round()})
    return {r: cols for r in rows}


def scene(codec, pair: np.ndarray, n_rows: int, n_cols: int, step: float, mapping: str = "zigzag",
          progress: bool = True, index_bits: int = INDEX_BITS, fixed_scale: np.ndarray | None = None,
          adapt: bool = False, decoder: str = "bp", calibrate: bool = False, tile_blocks: int = TILE_BLOCKS,
          plane_modes: bool = False, every: int = 0, phase: int = 0, size_requests: bool = False,
          step_fraction: float = 0.0, device: str | None = None, search: str = "gallop") -> dict:
    """Tiles of one scene's right view: real syndrome bits and the comparisons (see the module doc).

    ``plane_modes``: the decoder picks syndromes or prior-coded bits per plane (:class:`PlaneModes`).
    ``every``: instead of ``n_rows`` × ``n_cols`` evenly spaced tiles, every ``every``-th full tile in
    raster order over the whole scene (a systematic sample: every row and column, edges included)."""
    from tqdm import tqdm

    from edge_encoder.encoder import quantise
    from ndsc.sources.images import pad_to_multiple
    from fusion_decoder.stereo_tiles import AdaptiveScales
    from training.stereo_binning import (SCALE_BITS, IndexMap, LlrCalibration, PlaneModes, PriorPlanes, RequestSizer,
                                         decode_tile, encode_tile, mixture_bits, quantise_scale, tile_spec)

    hw = pair.shape[-2:]
    payloads, _ = codec.encode(pair)
    left_alone = codec.decode([payloads[0], None], hw)[0]
    enc = codec.encoders[1]
    stride, t = enc.info.frame_stride, tile_blocks
    symbols = enc.frame_symbols(pair[1])
    c = symbols.shape[0]
    hb, wb = -(-hw[0] // stride), -(-hw[1] // stride)
    grid = symbols.reshape(c, hb, wb)
    gain = np.asarray(enc.gain, np.float64)
    # the decoder's scales (calibrated elsewhere, nothing sent) or the scene's own (sent: 8 bits each)
    scale = fixed_scale if fixed_scale is not None else oracle_scale(pair, left_alone, enc, symbols, gain)
    sent_scale = quantise_scale(scale)
    # adaptive: the decoder refits the scales after each tile from what it decoded, starting from the
    # calibrated ones (weighted as ADAPT_PRIOR_BLOCKS blocks); nothing is sent
    adaptive = AdaptiveScales(scale, ADAPT_PRIOR_BLOCKS)
    bp, check_bits = syndrome_decoder(decoder)
    spec = tile_spec(c * t * t, index_bits, check_bits=check_bits)
    # calibrate: the decoder learns an LLR map from the planes it decodes, across the scene's tiles
    calibration = LlrCalibration(index_bits) if calibrate else None
    index_map = IndexMap(index_bits, mapping)
    # size_requests: each plane's first request learned across the scene's tiles (RequestSizer)
    sizer = RequestSizer(index_bits) if size_requests else None
    modes = PlaneModes(PriorPlanes(enc.coder.tables, index_map, spec.n), index_bits, check_bits) if plane_modes else None
    full_rows = [r for r in range(hb // t) if (r + 1) * t * stride <= hw[0]]
    row_cols = tile_sample(full_rows, wb // t, n_rows, n_cols, every, phase)
    tiles = []
    bar = tqdm(total=sum(map(len, row_cols.values())), desc="tiles", disable=not progress, leave=False)
    for r, cols in row_cols.items():
        if not cols:
            continue
        y0 = r * t * stride
        # the strip's own analysis reproduces the frame's symbols (a block transform: no leak across tiles)
        strip = pad_to_multiple(np.asarray(pair[1], np.float32)[:, y0:y0 + t * stride], (stride, stride))
        assert np.array_equal(quantise(enc.analysis(strip[None])[0], enc.gain), grid[:, r * t:(r + 1) * t])
        centres = candidate_centres(left_alone, y0, t * stride, cols, enc, gain, step, tile_blocks=t)
        for i, col in enumerate(cols):
            sym = grid[:, r * t:(r + 1) * t, col * t:(col + 1) * t].reshape(c, -1).astype(np.int64)
            side = centres[:, i]
            start = time.perf_counter()
            edge = encode_tile(spec, sym, index_map)
            res = decode_tile(spec, edge, side, sent_scale, index_map, bp=bp, calibration=calibration, modes=modes,
                              sizer=sizer, step_fraction=step_fraction, device=device, search=search)
            decode_seconds = time.perf_counter() - start
            assert np.array_equal(res.symbols, sym.reshape(-1)), "lossless round trip failed"
            tiles.append({"row": r, "col": col, "real_bits": res.bits, "syndrome_bits": res.syndrome_bits,
                          "check_bits": res.check_bits, "escape_bits": res.escape_bits, "raw_bits": res.raw_bits,
                          "wasted_bits": res.wasted_bits, "prior_bits": res.prior_bits,
                          "plane_modes": "".join(m[0] for m in res.plane_modes),
                          "escapes": int(len(edge.escape_positions)),
                          "requests": res.requests, "llr_bits": res.llr_bits, "plane_bits": res.plane_bits,
                          "plane_llr_bits": [round(b, 1) for b in res.plane_llr_bits],
                          "ans_bits": prior_bits(sym, enc.coder.tables),
                          "learned_bits": learned_tile_bits(sym.astype(np.float64), side, scale),
                          "model_bits": mixture_bits(sym, side, sent_scale, index_map),
                          "decode_seconds": decode_seconds, "seconds": time.perf_counter() - start})
            if adapt:  # after the tile's figures: they use the scales its decoding used
                adaptive.update(res.symbols.reshape(c, -1), side)
                sent_scale = adaptive.current
            bar.update()
    bar.close()
    out = {"payload_bits": 8 * len(payloads[1]), "table_bits": prior_bits(symbols, enc.coder.tables),
           "scale_bits": 0 if fixed_scale is not None else SCALE_BITS * c, "tiles": tiles, "dims_per_tile": 3 * (t * stride) ** 2}
    for k in ("real", "ans", "learned", "model", "llr"):
        out[f"{k}_bits"] = sum(x[f"{k}_bits"] for x in tiles)
    out["real_bits_with_scales"] = out["real_bits"] + out["scale_bits"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="default: the shipped stereo-middlebury")
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="Middlebury scenes (the preset's split)")
    ap.add_argument("--skimage", action="store_true", help="scikit-image's pair instead of the held-out scenes")
    ap.add_argument("--scenes", help="only these held-out scenes, comma separated (e.g. Art)")
    ap.add_argument("--points", default="3", help="right-view points, comma separated (bundle quality names)")
    ap.add_argument("--rows", type=int, default=2, help="tile rows per scene (evenly spaced)")
    ap.add_argument("--cols", type=int, default=6, help="tiles per row (evenly spaced)")
    ap.add_argument("--step", type=float, default=0.5, help="candidate disparity spacing, px")
    ap.add_argument("--mapping", default="zigzag", choices=("zigzag", "offset"), help="symbol → index map")
    ap.add_argument("--index-bits", type=int, default=INDEX_BITS, help="bit planes (symbols beyond: escapes)")
    ap.add_argument("--scales", default="calibrated", choices=("calibrated", "adaptive", "oracle"),
                    help="the decoder's per-channel scales: fitted on scikit-image's pair (nothing sent), or on "
                         "each scene itself (counted as 8 bits each; the edge could not compute them); adaptive: "
                         "calibrated, then refitted by the decoder after each tile from the symbols it decoded")
    ap.add_argument("--decoder", default="bp", choices=DECODERS,
                    help="syndrome decoder: belief propagation (the ldpc package's, or fusion_decoder.belief_torch's "
                         "in float32 on the GPU where there is one), or BP then ordered-statistics decoding (BP-OSD) "
                         "where BP fails (planes then carry 32-bit CRCs instead of 16)")
    ap.add_argument("--calibrate-llr", action="store_true",
                    help="the decoder maps its model's LLRs to the error rates it has seen on the planes it decoded "
                         "(training.stereo_binning.LlrCalibration; nothing sent)")
    ap.add_argument("--tile-blocks", type=int, default=TILE_BLOCKS,
                    help="tile side in 8 × 8 px transform blocks (n = 192 · side² symbols a plane)")
    ap.add_argument("--plane-modes", action="store_true",
                    help="the decoder asks for each plane as syndromes or coded with the prior tables, whichever it "
                         "expects to be cheaper (training.stereo_binning.PlaneModes; one feedback bit a plane)")
    ap.add_argument("--every", type=int, default=0,
                    help="every K-th full tile of each scene in raster order instead of --rows × --cols")
    ap.add_argument("--phase", type=int, default=0, help="with --every K: start at the PHASE-th tile (0 … K − 1)")
    ap.add_argument("--size-requests", action="store_true",
                    help="each plane's first request is sized from the planes decoded before (training.stereo_binning."
                         "RequestSizer) instead of half its LLR entropy: fewer requests")
    ap.add_argument("--step-fraction", type=float, default=0.0, metavar="F",
                    help="each request after the first asks for F of the bits held when that is more than 8 "
                         "(training.stereo_binning.request_grid): fewer round trips on large planes")
    ap.add_argument("--device", help="compute the likelihoods in torch float32 on this device (cpu, cuda; "
                    "fusion_decoder.stereo_llr_torch) instead of NumPy float64")
    ap.add_argument("--search", default="gallop", choices=("gallop", "ascend"),
                    help="how the decoder finds a plane's least passing request: gallop then bisect over what the "
                         "edge could send (offline, fewer BP runs), or ascend one request at a time as the live "
                         "decoder does (fusion_decoder.stereo_frames; every BP run of the live path)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    import torch

    from ndsc.bundle import load_bundle
    from ndsc.bundles import default_bundle
    from training.stereo_eval import StereoCodec

    torch.set_num_threads(1)
    bundle = args.bundle or str(default_bundle("stereo-middlebury"))
    pairs = held_out_pairs(args.root, args.skimage)
    if args.scenes:
        wanted = args.scenes.split(",")
        pairs = [(name, pair) for name, pair in pairs if name in wanted]
        if len(pairs) != len(wanted):
            ap.error(f"--scenes {args.scenes}: not all among the held-out scenes")
    top = load_bundle(bundle).quality_names[-1]
    rows = []
    started = time.perf_counter()
    for q in args.points.split(","):
        codec = StereoCodec(bundle, quality=(top, q))
        fixed = calibrated_scale(codec) if args.scales in ("calibrated", "adaptive") else None
        for name, pair in pairs:
            r = {"scene": name, "point": f"{top}/{q}", "scales": args.scales, "decoder": args.decoder,
                 "calibrate_llr": args.calibrate_llr, "tile_blocks": args.tile_blocks,
                 "plane_modes": args.plane_modes, "every": args.every, "phase": args.phase,
                 "size_requests": args.size_requests, "step_fraction": args.step_fraction, "search": args.search,
                 "device": args.device,
                 **scene(codec, pair, args.rows, args.cols, args.step, args.mapping, index_bits=args.index_bits,
                         fixed_scale=fixed, adapt=args.scales == "adaptive", decoder=args.decoder,
                       calibrate=args.calibrate_llr, tile_blocks=args.tile_blocks, plane_modes=args.plane_modes,
                         every=args.every, phase=args.phase, size_requests=args.size_requests,
                         step_fraction=args.step_fraction, device=args.device, search=args.search)}
            rows.append(r)
            real = r["real_bits_with_scales"]
            print(f"{name} {r['point']}: {len(r['tiles'])} tiles: real {real} bits ({100 * (1 - real / r['ans_bits']):.1f} % "
                  f"below ANS tables {r['ans_bits']:.0f}; {100 * (1 - r['real_bits'] / r['ans_bits']):.1f} % without the "
                  f"{r['scale_bits']} scale bits), ideal learned {100 * (1 - r['learned_bits'] / r['ans_bits']):.1f} %, "
                  f"decoder's model {100 * (1 - r['model_bits'] / r['ans_bits']):.1f} %, per-bit LLRs "
                  f"{100 * (1 - r['llr_bits'] / r['ans_bits']):.1f} %; scene tables/payload "
                  f"{r['table_bits'] / r['payload_bits']:.4f}", flush=True)
        sel = [r for r in rows if r["point"] == f"{top}/{q}"]
        ans = sum(r["ans_bits"] for r in sel)
        pooled = {k: sum(r[k] for r in sel) for k in ("real_bits_with_scales", "real_bits", "learned_bits",
                                                        "model_bits", "llr_bits")}
        print(f"all scenes {top}/{q}: {sum(len(r['tiles']) for r in sel)} tiles, saving vs ANS tables: real "
              + ", ".join(f"{k} {100 * (1 - v / ans):.1f} %" for k, v in pooled.items())
              + f"; tables/payload {sum(r['table_bits'] for r in sel) / sum(r['payload_bits'] for r in sel):.4f}", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"bundle": bundle, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
