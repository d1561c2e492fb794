"""The plane check: a BP word that satisfies the syndrome bits received but is wrong never reaches the output."""
from __future__ import annotations

import numpy as np
import pytest

from edge_encoder.binning import SyndromeResponder
from fusion_decoder.belief import SyndromeDecoder
from ndsc.binning import SYNDROME, PlanePlan, SyndromeSpec, random_checks
from ndsc.bundle import SourceInfo
from ndsc.entropy import ChannelTable, quantise_pmf

N, FLIP = 128, 0.03


def _source(check_bits: int, max_requests: int = 64) -> SourceInfo:
    """A binary source x = side ⊕ BSC(FLIP) noise, one syndrome plane starting with only 2 accumulated bits:
    BP then often "converges" to a wrong word (the hard decision alone satisfies 2 checks a quarter of the time)."""
    spec = SyndromeSpec((0,), 0, 1, (PlanePlan(0, SYNDROME, 2),), random_checks(N, 3, 0), 8, max_requests, 60,
                        {"kind": "table", "side_offset": 0, "probs": [[1 - FLIP, FLIP], [FLIP, 1 - FLIP]]},
                        check_bits=check_bits)
    return SourceInfo(name="s1", channel_names=("s1.0",), input_shape=(1, N), latent_shape=(1, N),
                      encoder_file="encoder_1.onnx", tables=(ChannelTable(0, quantise_pmf(np.array([0.5, 0.5]), 1e-6)),),
                      coding=SYNDROME, binning=spec)


def _windows(count: int = 20) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        side = rng.integers(0, 2, N)
        out.append((side ^ (rng.random(N) < FLIP), side))
    return out


def _decode_all(info: SourceInfo) -> list[dict]:
    from training.binning import decode_in_process

    dec = SyndromeDecoder(info.binning, info.coder(), info.latent_shape)
    responder = SyndromeResponder(info)
    return [decode_in_process(responder, dec, w, x, side) for w, (x, side) in enumerate(_windows())]


@pytest.mark.parametrize("check_bits", [16, 32])
def test_a_wrong_word_that_satisfies_the_checks_is_caught_and_the_window_decoded_right(check_bits):
    windows = _windows()
    unchecked = _decode_all(_source(check_bits=0))
    wrong = [w for w, got in enumerate(unchecked) if not np.array_equal(got["symbols"], windows[w][0])]
    assert len(wrong) >= 3  # the defect: without the check, BP's first "success" is taken as it is
    checked = _decode_all(_source(check_bits))
    for w, got in enumerate(checked):  # every window: exactly the edge's symbols
        assert np.array_equal(got["symbols"], windows[w][0]), w
    assert sum(got["check_failures"] for got in checked) >= len(wrong)  # caught, then more bits asked for
    # the check's bits are in each window's payload, so in its bits (the rate)
    assert _source(check_bits).binning.initial_bits == 2 + check_bits
    assert all(got["bits"] >= 8 * ((2 + check_bits + 7) // 8) for got in checked)


def test_past_the_request_bound_a_caught_word_falls_back_to_the_direct_payload():
    windows = _windows()
    got = _decode_all(_source(check_bits=16, max_requests=0))
    for w, g in enumerate(got):
        assert np.array_equal(g["symbols"], windows[w][0]), w
        assert g["requests"] == 1  # BP failed or its word was refused: the one request is the direct payload
    assert sum(g["check_failures"] for g in got) >= 3


def test_a_forged_check_never_accepts_a_word_and_the_direct_payload_exposes_it():
    """The decoder cannot tell a forged check from a wrong word: it asks for bits up to the bound, then for the
    direct payload, whose symbols contradict the check (the live stage refuses that answer: bad_syndrome)."""
    info = _source(check_bits=16, max_requests=3)
    spec = info.binning
    x, side = _windows(1)[0]
    payload = bytearray(spec.initial_payload(spec.planes_of(x)))
    last = spec.initial_bits - 1  # the check's last bit
    payload[last // 8] ^= 0x80 >> (last % 8)
    dec = SyndromeDecoder(spec, info.coder(), info.latent_shape)
    state = dec.start(spec.split_payload(bytes(payload)))
    responder = SyndromeResponder(info)
    responder.encode(0, x)
    from ndsc.wire import pb

    while True:
        out = dec.attempt(state, side)
        assert out.symbols is None
        r = out.request
        state.requests += 1
        block = responder.answer(pb.SyndromeRequest(window=0, plane=r.plane, first_bit=r.first, end_bit=r.end,
                                                    direct=r.direct))
        if r.direct:
            break
        dec.take(state, r, np.unpackbits(np.frombuffer(block.bits, np.uint8))[: r.end - r.first])
    assert state.requests == spec.max_requests + 1
    direct = info.coder().decode(block.bits, N)
    assert np.array_equal(direct.reshape(-1), x) and spec.mismatched_planes(direct, state.checks) == [0]


@pytest.mark.parametrize("check_bits", [0, 16])
def test_a_record_without_the_field_loads_as_no_check(check_bits):
    record = _source(check_bits).binning.to_json()
    assert ("check_bits" in record) == bool(check_bits)
    assert SyndromeSpec.from_json(record).check_bits == check_bits
