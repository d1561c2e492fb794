"""Syndrome coding of a right view against the decoded left (training.stereo_binning, driven by
benchmarks/stereo_binning.py): lossless, and cheaper than the ANS payload when the right view is the
left shifted by a few pixels (a disparity the decoder has to learn from the decoded bits)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_benchmark


def test_index_map_round_trip_and_interval_probability():
    from scipy.stats import laplace

    from training.stereo_binning import IndexMap

    for kind in ("zigzag", "offset"):
        m = IndexMap(5, kind)
        q = np.arange(-16, 16)
        assert sorted(m.index(q).tolist()) == list(range(32)) and (m.value(m.index(q)) == q).all()
        assert m.escaped(np.array([-17, -16, 15, 16])).tolist() == [True, False, False, True]
        rng = np.random.default_rng(0)
        for _ in range(50):
            lo = int(rng.integers(1, 31))
            hi = int(rng.integers(lo, 31))  # inner intervals: no tail folded into the end indices
            mu, s = rng.normal(0, 4), rng.uniform(0.3, 4)
            v = m.value(np.arange(lo, hi + 1))
            want = (laplace.cdf(v + 0.5, mu, s) - laplace.cdf(v - 0.5, mu, s)).sum()
            assert m.prob(np.array(lo), np.array(hi), np.array(mu), np.array(s)) == pytest.approx(want, abs=1e-12)


def test_shifted_right_view_round_trip_is_lossless_and_below_the_payload():
    import torch

    bench = load_benchmark("stereo_binning")  # scikit-image and ldpc are dependencies: no skip
    from ndsc.bundle import load_bundle
    from ndsc.bundles import default_bundle
    from ndsc.sources.images import skimage_pair
    from training.stereo_eval import StereoCodec

    torch.set_num_threads(1)
    shift = 6  # right(y, x) = left(y, x + 6): inside the candidates 0 … W/4 = 0 … 16
    left = skimage_pair()[0][:, 200:264, 300:300 + 64 + shift]
    pair = np.stack([left[:, :, :64], left[:, :, shift:shift + 64]])
    bundle = str(default_bundle("stereo-middlebury"))
    top = load_bundle(bundle).quality_names[-1]
    codec = StereoCodec(bundle, quality=(top, "3"))
    # the whole right view is one 64 × 64 tile: scene() asserts its decoded symbols equal the encoder's
    out = bench.scene(codec, pair, n_rows=1, n_cols=1, step=0.5, progress=False)
    assert len(out["tiles"]) == 1 and out["dims_per_tile"] == pair[1].size
    assert out["real_bits"] < 0.9 * out["payload_bits"], (out["real_bits"], out["payload_bits"])
    # sized first requests, plane modes, likelihoods and BP in torch (the GPU's path, here on the CPU): lossless
    sized = bench.scene(codec, pair, n_rows=1, n_cols=1, step=0.5, progress=False, plane_modes=True,
                        size_requests=True, step_fraction=1 / 64, decoder="bp-torch", device="cpu")
    assert sized["real_bits"] < 0.9 * sized["payload_bits"]


def test_adaptive_scales_take_each_blocks_residual_at_its_most_likely_disparity():
    from fusion_decoder.stereo_tiles import AdaptiveScales, quantise_scale

    rng = np.random.default_rng(1)
    centres = rng.normal(0, 5, size=(3, 2, 4))  # (candidates, channels, blocks)
    truth = np.array([2, 0, 1, 2])  # each block's disparity
    symbols = np.round(centres[truth, :, np.arange(4)].T)  # (channels, blocks): the side at the truth, rounded
    scales = AdaptiveScales(np.ones(2), prior_blocks=4.0)
    scales.update(symbols, centres)
    expected = np.abs(symbols - centres[truth, :, np.arange(4)].T).sum(axis=1)
    np.testing.assert_allclose(scales.residual_sum, expected)
    assert (scales.residual_sum <= 0.5 * 4 + 1e-9).all()  # rounding moves each symbol by at most ½
    np.testing.assert_allclose(scales.current, quantise_scale(np.maximum((4.0 + expected) / 8.0, 1e-3)))
    # padding blocks (known to the decoder) are left out
    again = AdaptiveScales(np.ones(2), prior_blocks=4.0)
    again.update(symbols, centres, known=np.array([False, False, True, True]))
    assert again.blocks == 2


def test_llr_calibration_starts_as_the_identity_and_learns_the_error_rates_it_sees():
    from training.stereo_binning import LlrCalibration

    cal = LlrCalibration(planes=2)
    llr = np.array([-12.0, -3.0, -0.7, 0.0, 0.7, 2.5, 9.0, 13.0])
    np.testing.assert_allclose(cal(0, llr), llr, atol=1e-9)
    rng = np.random.default_rng(0)
    # plane 1 sees a model that is too sure at |LLR| 11 (1 % wrong) and too unsure at |LLR| 1.75 (1 % wrong)
    magnitude = np.repeat([11.0, 1.75], 20_000)  # bin centres: the map is linear between them
    wrong = rng.random(magnitude.size) < 0.01
    sign = rng.choice([-1.0, 1.0], magnitude.size)
    bits = ((sign < 0) != wrong).astype(np.uint8)  # the decoded bit: the model's decision unless wrong
    cal.update(1, sign * magnitude, bits)
    out = cal(1, np.array([-11.0, 1.75]))
    assert out[0] == pytest.approx(-np.log(99), abs=0.3) and out[1] == pytest.approx(np.log(99), abs=0.3)
    np.testing.assert_allclose(cal(0, llr), llr, atol=1e-9)  # another plane's map is untouched


def test_prior_planes_split_each_symbols_table_bits_into_its_planes_and_code_them_losslessly():
    from ndsc.entropy import ChannelTable
    from training.stereo_binning import IndexMap, PriorPlanes, decode_plane_bits, encode_tile, tile_spec

    mapping = IndexMap(5)
    freqs = np.array([1, 2, 8, 40, 200, 40, 8, 2, 1, 2], np.float64)  # symbols −4 … 4, then the escape
    tables = [ChannelTable(offset=-4, freqs=tuple(int(f) for f in freqs)) for _ in range(2)]
    n = 64
    prior = PriorPlanes(tables, mapping, n)
    rng = np.random.default_rng(0)
    symbols = rng.choice(np.arange(-4, 5), p=freqs[:-1] / freqs[:-1].sum(), size=(2, n // 2))
    edge = encode_tile(tile_spec(n, mapping.bits), symbols, mapping)
    index = mapping.index(symbols.reshape(-1))
    plane_bits = np.zeros(n)
    for k in range(mapping.bits - 1, -1, -1):
        lo = (index >> (k + 1)) << (k + 1)
        weights = prior.weights0(lo, lo + (1 << (k + 1)) - 1, k)
        p0 = prior.p0(lo, lo + (1 << (k + 1)) - 1, k)
        np.testing.assert_array_equal(p0, weights / 2.0**24)
        bit = (index >> k) & 1
        plane_bits += -np.log2(np.where(bit == 0, p0, 1.0 - p0))
        words = edge.prior_coded(k, prior)  # the edge's own weights are the decoder's
        np.testing.assert_array_equal(decode_plane_bits(words, weights), bit)
        assert 32 * len(words) <= -np.log2(np.where(bit == 0, p0, 1.0 - p0)).sum() + 64
    # the chain rule: a symbol's planes cost what its mass charges it (the table's frequency inside
    # its range, out of every index's mass)
    total = int(prior.cum[0, -1])
    table_bits = -np.log2(freqs[symbols.reshape(-1) + 4] / total)
    np.testing.assert_allclose(plane_bits, table_bits, atol=1e-4)


def test_reference_vector_of_a_prior_coded_plane():
    """docs/bitstream.md §8, prior-coded planes: the index masses, each bit's integer weight and the
    words, from the spec's integer formulas and §3's coder written independently
    (tests/bitstream_reference.py), and from the library."""
    from ndsc.entropy import ChannelTable
    from ndsc.binning import SyndromeError
    from tests import bitstream_reference as spec
    from training.stereo_binning import IndexMap, PriorPlanes, decode_plane_bits, encode_tile, tile_spec

    mapping = IndexMap(3)  # zigzag: indices 0 … 7 are the symbols 0, −1, 1, −2, 2, −3, 3, −4
    table = ChannelTable(offset=-2, freqs=(5, 20, 60, 20, 5, 3))  # symbols −2 … 2, then the escape frequency
    symbols = np.array([[0, 1, -1, 9, 2, -2, 0, 3]])  # 9: an escape (sent raw); 3: outside the table
    expected_words = {2: [0x13C2D508], 1: [0x24618620], 0: [0x0619999C]}

    values = [0, -1, 1, -2, 2, -3, 3, -4]
    outside = sum(not -2 <= v <= 2 for v in values)
    masses = [table.freqs[v + 2] if -2 <= v <= 2 else max(1, table.freqs[-1] // outside) for v in values]
    assert masses == [60, 20, 20, 5, 5, 1, 1, 1]
    prior = PriorPlanes([table], mapping, 8)
    edge = encode_tile(tile_spec(8, mapping.bits), symbols, mapping)
    index = [int(i) for i in mapping.index(symbols.reshape(-1))]
    free = [p for p in range(8) if p != 3]  # the escape's bits are known to the decoder
    for k, words in expected_words.items():
        lo = [(i >> (k + 1)) << (k + 1) for i in index]
        weights = [spec.prior_weight0(masses, a, a + (1 << (k + 1)) - 1, k) for a in lo]
        assert prior.weights0(np.array(lo), np.array(lo) + (1 << (k + 1)) - 1, k).tolist() == weights
        bits = [(index[p] >> k) & 1 for p in free]
        spans = [(0, weights[p]) if b == 0 else (weights[p], spec.TOTAL - weights[p]) for p, b in zip(free, bits)]
        assert spec.rans_words(spans) == words
        assert edge.prior_coded(k, prior).tolist() == words
        assert decode_plane_bits(np.array(words, np.uint32), np.array([weights[p] for p in free])).tolist() == bits
    w = np.array([spec.prior_weight0(masses, 0, 7, 2)] * 7)
    with pytest.raises(SyndromeError, match="left after"):  # words that code more than the plane
        decode_plane_bits(np.array([0x13C2D508, 0x1], np.uint32), w)
    with pytest.raises(SyndromeError, match="does not decode"):
        decode_plane_bits(np.array([0x13C2D508, 0], np.uint32), w)
    assert decode_plane_bits(np.zeros(0, np.uint32), w).tolist() == [0] * 7  # every bit 0: no words


def test_a_stereo_tiles_record_names_its_prior_coding_and_one_without_it_is_read_as_older():
    from dataclasses import replace

    from ndsc.binning import SyndromeError
    from ndsc.stereo_tiles import PRIOR_CODING, StereoTiles, stereo_tiles_record

    record = stereo_tiles_record(channels=4, index_bits=4, scales={"": [1.0] * 4}, tile_blocks=2)
    assert record.conditional["prior_coding"] == PRIOR_CODING
    assert StereoTiles.of(record).prior_coding
    older = {k: v for k, v in record.conditional.items() if k != "prior_coding"}
    assert not StereoTiles.of(replace(record, conditional=older)).prior_coding  # never asked for a prior-coded plane
    with pytest.raises(SyndromeError, match="unknown prior_coding"):
        StereoTiles.of(replace(record, conditional={**older, "prior_coding": "range-f64"}))


def test_plane_modes_pick_the_prior_where_the_side_information_misleads():
    from ndsc.entropy import ChannelTable
    from training.stereo_binning import IndexMap, PlaneModes, PriorPlanes, TileSurprise

    mapping = IndexMap(4)
    prior = PriorPlanes([ChannelTable(offset=-2, freqs=(1, 4, 22, 4, 1, 1))], mapping, 1000)
    modes = PlaneModes(prior, planes=4, check_bits=16)
    p0 = np.full(1000, 0.9)
    llr = np.full(1000, 4.0)  # the side information is sure the bits are 0 (P ≈ 0.98)
    fresh = modes.estimates(0, llr, p0, TileSurprise())
    assert fresh["syndrome"] < fresh["prior"]  # trusted, the side information is cheaper
    misled = TileSurprise()
    bits = (np.random.default_rng(0).random(1000) < 0.1).astype(np.uint8)  # the planes above: 10 % ones
    misled.add(np.full(1000, 8.0), p0, bits)  # while the LLRs said 1 in 3 000
    after = modes.estimates(0, llr, p0, misled)
    assert after["prior"] < after["syndrome"]
    assert after["syndrome"] > 5 * fresh["syndrome"]


def test_a_systematic_tile_sample_takes_every_kth_tile_in_raster_order():
    bench = load_benchmark("stereo_binning")
    sample = bench.tile_sample(list(range(17)), 21, 2, 4, every=5)
    tiles = [(r, c) for r, cols in sample.items() for c in cols]
    assert tiles == [(k // 21, k % 21) for k in range(0, 17 * 21, 5)]  # every row and column, edges included
    assert {c for _, c in tiles} == set(range(21))
    other = [(r, c) for r, cols in bench.tile_sample(list(range(17)), 21, 2, 4, every=5, phase=2).items() for c in cols]
    assert other == [(k // 21, k % 21) for k in range(2, 17 * 21, 5)] and not set(other) & set(tiles)
    assert bench.tile_sample([0, 1, 2], 5, 2, 2) == {0: [0, 4], 2: [0, 4]}  # evenly spaced, corners in


def test_request_sizer_starts_at_half_the_entropy_then_at_a_low_quantile_of_what_planes_needed():
    from training.stereo_binning import FIRST_REQUEST, RequestSizer

    sizer = RequestSizer(2)
    assert sizer.first(1, 1000.0) == int(FIRST_REQUEST * 1000)  # nothing seen yet
    for ratio in np.linspace(1.0, 2.0, 11):  # plane 1 needed 1.0 … 2.0 × its entropy
        sizer.update(1, int(ratio * 500), 500.0)
    assert sizer.first(1, 1000.0) == pytest.approx(1000 * np.quantile(np.linspace(1.0, 2.0, 11), RequestSizer.QUANTILE),
                                                   abs=2)
    assert sizer.first(0, 1000.0) == int(FIRST_REQUEST * 1000)  # each significance learns on its own
    for _ in range(2 * RequestSizer.KEEP):  # old planes are forgotten
        sizer.update(1, 300, 100.0)
    assert sizer.first(1, 1000.0) == 3000


def test_least_passing_finds_the_fewest_bits_on_the_request_grid_that_pass():
    from training.stereo_binning import STEP_BITS, _least_passing

    for need in (1, 7, 8, 9, 100, 331, 333):
        tried = []

        def attempt(count: int, need: int = need) -> np.ndarray | None:
            tried.append(count)
            return np.zeros(1) if count >= need else None

        held = 333
        got = _least_passing(attempt, held)
        assert got >= need and (got - STEP_BITS < need) and (held - got) % STEP_BITS == 0
        assert len(tried) <= int(np.ceil(np.log2(held / STEP_BITS + 1))) + 1
        if need > 300:  # a request at 300 failed: only the grid above it is tried
            tried.clear()
            assert _least_passing(attempt, held, 300) == got and min(tried) > 300


def test_request_grid_steps_by_eight_bits_or_a_fraction_of_what_is_held():
    from training.stereo_binning import STEP_BITS, request_grid

    assert request_grid(100, 140) == [100, 108, 116, 124, 132, 140]
    assert request_grid(150, 140) == []
    grid = request_grid(1000, 5000, 1 / 32)
    steps = np.diff(grid)
    assert grid[0] == 1000 and grid[-1] <= 5000 < grid[-1] + steps[-1] * 1.1
    assert (steps >= STEP_BITS).all() and (steps == [int(c / 32) for c in grid[:-1]]).all()


def test_torch_likelihoods_match_numpys():
    import torch

    from training.stereo_binning import IndexMap, _bit_llr
    from fusion_decoder.stereo_llr_torch import bit_llr

    rng = np.random.default_rng(0)
    d, c, n = 40, 12, 16
    centres = rng.normal(0, 3, (d, c, n)) + rng.normal(0, 5, (1, c, n))
    scale = rng.uniform(0.5, 3, c)
    for kind in ("zigzag", "offset"):
        mapping = IndexMap(7, kind)
        for k in (6, 3, 0):
            width = 1 << (k + 1)
            lo = rng.integers(0, 128 // width, (c, n)) * width
            hi = lo + width - 1
            lo[0, :3] = hi[0, :3] = 5  # escapes: a single index
            want, want_post = _bit_llr(lo, hi, k, mapping, centres, scale)
            got, got_post = bit_llr(lo, hi, k, mapping, torch.as_tensor(centres, dtype=torch.float32), scale)
            assert np.allclose(got_post, want_post, atol=1e-4)
            near = np.abs(want) < 20  # float32 loses the far tails' precision, not the bits' direction
            assert np.allclose(got[near], want[near], atol=5e-3, rtol=1e-3)
            leaning = np.abs(want) > 1e-3  # coin flips may land either side of 0
            assert (np.sign(got[leaning]) == np.sign(want[leaning])).all() and leaning.sum() >= 40
