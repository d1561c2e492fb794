"""Export a stereo bundle whose right view is syndrome-coded in tiles against the left (binning).

The exported bundle is the source bundle with the right source's ``coding`` set to ``syndrome`` and a
binning record of kind ``stereo-tiles`` (:func:`ndsc.stereo_tiles.stereo_tiles_record`): the code of
one tile, stored row by row, and the decoder's per-channel Laplacian scales per quality point, fitted
here on a calibration pair (scikit-image's by default: no held-out scene). Encoders and decoder
weights are copied unchanged; the bundle id changes with the manifest.

Usage::

    python -m training.stereo_binning_export OUT [--bundle B] [--index-bits 7]
"""
from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from ndsc.binning import SYNDROME
from ndsc.bundle import load_bundle, write_manifest
from ndsc.stereo_tiles import stereo_tiles_record

#: index bits of the exported record: symbols −64 … 63 (the right view's symbols measured within ±55
#: at point 3; beyond: escapes)
INDEX_BITS = 7
#: index bits at the finest point: with 7, 20–64 escapes a tile (32 bits each) cost Pipes more than
#: binning saved there (docs/stereo.md)
TOP_POINT_INDEX_BITS = 8


def right_disparity(left: np.ndarray, right: np.ndarray):
    """Sub-pixel disparity of the right view (1, H, W): right(y, x) ≈ left(y, x + d)."""
    import torch

    from models.side_information import stereo_disparities

    grey = lambda v: torch.from_numpy(np.asarray(v, np.float32).mean(axis=0) / 255.0)[None]  # noqa: E731
    _, (_, d) = stereo_disparities(grey(left), grey(right), max_disparity=left.shape[-1] // 4)
    return d


def oracle_scale(pair: np.ndarray, left_alone: np.ndarray, right_encoder, symbols: np.ndarray,
                 gain: np.ndarray) -> np.ndarray:
    """Per-channel Laplacian scale of the right view's symbols around the decoded left warped by the
    pair's own disparity (what a decoder that knew the disparity would fit)."""
    import torch

    from models.side_information import warp_rows
    from ndsc.sources.images import pad_to_multiple

    d = right_disparity(pair[0], pair[1])
    side = warp_rows(torch.from_numpy(np.asarray(left_alone, np.float32))[None], d, -1)[0].numpy()
    stride = right_encoder.info.frame_stride
    y = right_encoder.analysis(pad_to_multiple(side, (stride, stride))[None])[0]
    centre = y.reshape(y.shape[0], -1) * gain.reshape(-1, 1)
    return np.maximum(np.abs(symbols - centre).mean(axis=1), 1e-3)


def calibrated_scale(codec, pair: np.ndarray | None = None) -> np.ndarray:
    """The decoder's per-channel scales for ``codec``'s (a :class:`training.stereo_eval.StereoCodec`)
    right-view point, fitted on ``pair`` (default scikit-image's, a scene outside the held-out ones)."""
    from ndsc.sources.images import skimage_pair

    pair = skimage_pair() if pair is None else pair
    left_alone = codec.decode([codec.encode(pair)[0][0], None], pair.shape[-2:])[0]
    enc = codec.encoders[1]
    return oracle_scale(pair, left_alone, enc, enc.frame_symbols(pair[1]), np.asarray(enc.gain, np.float64))


def export_stereo_binning_bundle(out: str | Path, bundle: str | Path | None = None, index_bits: int = INDEX_BITS,
                                 tile_blocks: int = 8, calibration_pair: np.ndarray | None = None) -> Path:
    """Write the binning variant of stereo ``bundle`` (default: the shipped ``stereo-middlebury``) to
    ``out``; return its path. ``calibration_pair``: where the scales are fitted (default
    scikit-image's pair)."""
    from ndsc.bundles import default_bundle
    from training.stereo_eval import StereoCodec

    src = load_bundle(bundle or default_bundle("stereo-middlebury"))
    if src.modality != "stereo" or src.n_sources != 2:
        raise ValueError(f"{src.path} is not a two-view stereo bundle")
    right = src.sources[1]
    points = right.quality_names or ("",)
    scales = {q: calibrated_scale(StereoCodec(src.path, quality=q or None), calibration_pair) for q in points}
    by_point = {points[-1]: TOP_POINT_INDEX_BITS} if len(points) > 1 and TOP_POINT_INDEX_BITS != index_bits else {}
    record = stereo_tiles_record(right.latent_shape[0], index_bits, scales, tile_blocks=tile_blocks,
                                 index_bits_by_point=by_point)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for name in {s.encoder_file for s in src.sources} | {src.decoder["weights"]}:
        shutil.copyfile(src.file(name), root / name)
    sources = [src.sources[0], replace(right, coding=SYNDROME, binning=record)]
    write_manifest(root, modality=src.modality, sources=sources, decoder=src.decoder, sample_rate=src.sample_rate,
                   training_config=src.training_config, evaluation={},
                   extra={**src.extra, "binned_from": src.bundle_id})
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the new bundle's directory")
    ap.add_argument("--bundle", help="the stereo bundle to start from (default: the shipped stereo-middlebury)")
    ap.add_argument("--index-bits", type=int, default=INDEX_BITS, help="bit planes a symbol (beyond: escapes)")
    args = ap.parse_args(argv)
    path = export_stereo_binning_bundle(args.out, args.bundle, args.index_bits)
    print(f"wrote {path} (bundle {load_bundle(path).bundle_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
