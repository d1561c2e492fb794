"""The Wyner–Ziv bound's pieces (benchmarks/stereo_wz_bound.py) on real encoders and a shifted view.

The ``learned`` bound claims the decoder needs no disparity in advance: each region's disparity is a
hidden variable, uniform over the candidates. These tests pin what that claim rests on: the per-symbol
bits are the scipy model's; a region's mixture bits lie between its best candidate's and that plus
log2 |D|; and on a view that *is* the other one shifted, the mixture finds the shift (its bits fall far
below the same model centred on a zero-disparity warp).
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("stereo_wz_bound")


def test_the_per_symbol_bits_are_the_scipy_models(bench):
    rng = np.random.default_rng(0)
    symbols = np.round(rng.laplace(size=(6, 500)) * np.arange(1, 7)[:, None])
    centre = symbols + rng.normal(scale=np.linspace(0.1, 4, 6)[:, None], size=symbols.shape)
    scale = np.maximum(np.abs(symbols - centre).mean(axis=1, keepdims=True), 1e-3)
    bits = bench.laplace_bit_map(symbols, centre, scale)
    assert bits.shape == symbols.shape and (bits >= 0).all()
    assert bits.sum() == pytest.approx(bench.laplace_bits(symbols, centre), rel=1e-9)


def test_the_decoder_learns_a_shift_it_was_never_told(bench, one_torch_thread):
    import torch

    from edge_encoder.encoder import EdgeEncoder
    from models.side_information import warp_rows
    from ndsc.bundle import load_bundle
    from ndsc.bundles import default_bundle
    from ndsc.sources.images import skimage_pair

    bundle = load_bundle(default_bundle("stereo-middlebury"))
    encoder = EdgeEncoder(bundle, 1, quality=bundle.quality_names[2])
    left = skimage_pair()[0][:, 200:264, 300:428]  # (3, 64, 128): textured, 8 × 16 blocks
    shift = 7.0
    right = warp_rows(torch.from_numpy(left)[None], torch.full((1, 64, 128), shift), -1)[0].numpy()
    symbols = encoder.frame_symbols(right).astype(np.float64)
    gain = np.asarray(encoder.gain, np.float64).reshape(-1, 1)

    def bits_at(d: float, scale) -> np.ndarray:
        side = warp_rows(torch.from_numpy(left)[None], torch.full((1, 64, 128), d), -1)[0].numpy()
        centre = encoder.analysis(side[None])[0].reshape(symbols.shape[0], -1).astype(np.float64) * gain
        return bench.laplace_bit_map(symbols, centre, scale)

    # one scale for every channel (the benchmark fits one per channel on the oracle's residual)
    scale = np.full((symbols.shape[0], 1), 0.3)
    learned = bench.learned_bits(symbols, left, encoder, gain, scale, regions=(2,), step=1.0)[2]
    candidates = np.arange(0.0, 128 // 4 + 0.5, 1.0)
    per_region = np.stack([bits_at(d, scale).sum(0).reshape(8, 16).reshape(4, 2, 8, 2).sum((1, 3)).ravel()
                           for d in candidates])
    best, regions = per_region.min(0).sum(), per_region.shape[1]
    assert best <= learned <= best + regions * np.log2(len(candidates)) + 1e-6
    # every region finds the shift, but the last column (its right edge is the border replicated)
    winners = per_region.argmin(0).reshape(4, 8)
    assert (winners[:, :-1] == int(shift)).all(), winners
    assert learned < 0.5 * bits_at(0.0, scale).sum()  # and it pays: zero disparity costs over twice as much
