"""Belief propagation: the ldpc package against the NumPy decoder, and the per-window request loop."""
from __future__ import annotations

import numpy as np
import pytest

from fusion_decoder.belief import SyndromeDecoder, bp_ldpc, bp_numpy, bp_osd
from ndsc.binning import PlanePlan, SyndromeSpec, random_checks
from ndsc.bundle import load_bundle

pytest.importorskip("ldpc")


def _instance(rng, n: int, m: int, flip: float):
    """A random code, true bits, side-information LLRs with BSC(flip) errors and the syndrome."""
    spec = SyndromeSpec((0,), 0, 1, (PlanePlan(0, "syndrome", m),), random_checks(n, 3, int(rng.integers(1 << 30))),
                        8, 4, 60, {"kind": "table", "side_offset": 0, "probs": [[1, 1]]})
    positions, chk, var = spec.merged_code(m)
    bits = rng.integers(0, 2, n).astype(np.uint8)
    noisy = bits ^ (rng.random(n) < flip).astype(np.uint8)
    llr = np.where(noisy == 0, 1.0, -1.0) * np.log((1 - flip) / flip)
    syndrome = np.bincount(chk, weights=bits[var], minlength=m).astype(np.int64) % 2
    return chk, var, n, m, llr, syndrome, bits


def test_ldpc_package_and_numpy_decoders_agree():
    rng = np.random.default_rng(0)
    agree = both = 0
    for m, flip in [(300, 0.05), (400, 0.05), (500, 0.08), (220, 0.05), (600, 0.1)] * 3:
        chk, var, n, m, llr, syndrome, truth = _instance(rng, 1024, m, flip)
        a_bits, a_ok, a_it = bp_ldpc(chk, var, n, m, llr, syndrome, 60)
        b_bits, b_ok, b_it = bp_numpy(chk, var, n, m, llr, syndrome, 60)
        for bits, ok in ((a_bits, a_ok), (b_bits, b_ok)):  # "converged" means "satisfies the syndrome"
            assert ok == bool((np.bincount(chk, weights=bits[var], minlength=m).astype(int) % 2 == syndrome).all())
        agree += a_ok == b_ok
        if a_ok and b_ok:
            both += 1
            assert np.array_equal(a_bits, b_bits) and np.array_equal(a_bits, truth)
    assert agree >= 13 and 3 <= both < 15  # same verdict on (nearly) every instance; some decode, some do not


def _skewed_instance(rng, n: int, m: int):
    """A syndrome plane as the stereo prototype sees one: most bits near certain, a few hundred not."""
    from training.stereo_binning import tile_spec

    spec = tile_spec(n, 1, seed=int(rng.integers(1 << 20)))
    positions, chk, var = spec.merged_code(m)
    bits = rng.integers(0, 2, n).astype(np.uint8)
    p_flip = np.where(rng.random(n) < 0.1, rng.uniform(0.02, 0.45, n), 1e-6)
    side = bits ^ (rng.random(n) < p_flip).astype(np.uint8)
    llr = np.where(side == 0, 1.0, -1.0) * np.log((1 - p_flip) / p_flip)
    syndrome = spec.merged_syndrome(spec.accumulated(bits)[spec.order[:m]], m)
    return chk, var, n, len(positions), llr, syndrome, bits


def _syndrome_holds(chk, var, m, bits, syndrome) -> bool:
    return bool(np.array_equal(np.bincount(chk, weights=bits[var], minlength=m).astype(np.int64) % 2, syndrome))


def test_bp_osd_recovers_planes_bp_cannot_and_always_meets_the_syndrome():
    rng = np.random.default_rng(3)
    only_osd = bp_converged = 0
    for m in [160, 176, 192, 208, 320] * 4:
        chk, var, n, m, llr, syndrome, truth = _skewed_instance(rng, 2048, m)
        bp_bits, bp_ok, _ = bp_ldpc(chk, var, n, m, llr, syndrome, 100)
        osd_bits, osd_ok, _ = bp_osd(chk, var, n, m, llr, syndrome, 100)
        # OSD's word meets the syndrome at every attempt (so callers must verify it with a CRC) ...
        assert osd_ok and _syndrome_holds(chk, var, m, osd_bits, syndrome)
        if bp_ok:  # ... and where BP converged, it is BP's word
            assert np.array_equal(osd_bits, bp_bits)
            bp_converged += 1
        elif np.array_equal(osd_bits, truth):
            only_osd += 1
    assert only_osd >= 3 and bp_converged >= 3  # OSD decodes planes BP fails on, with the same syndrome bits


@pytest.mark.parametrize("bp", [bp_ldpc, bp_numpy])
def test_requests_until_decoded_recover_the_symbols_exactly(binning_bundle, bp):
    from edge_encoder.binning import SyndromeResponder
    from edge_encoder.encoder import EdgeEncoder
    from ndsc.wire import pb
    from tests.binning.conftest import test_windows

    b = load_bundle(binning_bundle)
    info = b.sources[1]
    _, windows = test_windows(binning_bundle)
    side_enc, enc = EdgeEncoder(b, 0), EdgeEncoder(b, 1)
    responder = SyndromeResponder(info)
    dec = SyndromeDecoder(info.binning, info.coder(), info.latent_shape, bp)
    for w, x in enumerate(windows[:2]):
        truth = info.binning.symbols_of(info.binning.indices(enc.symbols(x[1])))
        state = dec.start(info.binning.split_payload(responder.encode(w, enc.symbols(x[1]))))
        for _ in range(info.binning.max_requests + 2):
            out = dec.attempt(state, side_enc.symbols(x[0]))
            if out.symbols is not None:
                break
            r = out.request
            state.requests += 1
            block = responder.answer(pb.SyndromeRequest(window=w, plane=r.plane, first_bit=r.first, end_bit=r.end,
                                                        direct=r.direct))
            dec.take(state, r, block.bits if r.direct else np.unpackbits(np.frombuffer(block.bits, np.uint8))[
                : r.end - r.first])
        assert np.array_equal(out.symbols, truth)
    missing = dec.start(info.binning.split_payload(responder.encode(9, enc.symbols(windows[0][1]))))
    assert dec.attempt(missing, None).request.direct  # no side information: only the direct payload decodes
