import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndsc.entropy import TABLE_PRECISION, ChannelTable, EntropyCodingError, LatentCoder, quantise_pmf


def _tables(m: int, half: int = 12) -> list[ChannelTable]:
    x = np.arange(-half, half + 1)
    return [ChannelTable(-half, quantise_pmf(np.exp(-0.5 * x**2 / (1 + c)), 1e-5)) for c in range(m)]


def test_quantised_tables_sum_to_precision_and_stay_positive():
    freqs = quantise_pmf(np.array([1.0, 1e-12, 0.0, 3.0]), escape_mass=1e-9)
    assert sum(freqs) == 1 << TABLE_PRECISION
    assert min(freqs) >= 1 and len(freqs) == 5


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(0, 300), st.integers(0, 2**31 - 1))
def test_random_symbols_round_trip_bit_exactly(m, length, seed):
    rng = np.random.default_rng(seed)
    coder = LatentCoder(_tables(m))
    symbols = np.round(rng.normal(0, 4, size=(m, length))).astype(np.int64)
    if length:
        symbols[0, 0] = rng.integers(-5000, 5000)  # escapes beyond the table range
    payload = coder.encode(symbols)
    assert (coder.decode(payload, length) == symbols).all()
    assert coder.encode(symbols) == payload  # deterministic


def test_escape_values_far_outside_the_table_survive():
    coder = LatentCoder(_tables(1, half=2))
    symbols = np.array([[-(1 << 22), -3, 3, 1 << 22, 0]])
    assert (coder.decode(coder.encode(symbols), 5) == symbols).all()


def test_payload_costs_close_to_the_table_entropy():
    coder = LatentCoder(_tables(1))
    rng = np.random.default_rng(0)
    symbols = np.round(rng.normal(0, 1, size=(1, 2000))).astype(np.int64)
    freqs = np.asarray(coder.tables[0].freqs, float)
    ideal_bits = -np.log2(freqs[symbols[0] + 12] / freqs.sum()).sum()
    assert 8 * len(coder.encode(symbols)) <= ideal_bits + 40  # ANS overhead is a few bytes per payload


def test_wrong_shapes_and_bad_tables_get_clear_errors():
    coder = LatentCoder(_tables(2))
    with pytest.raises(EntropyCodingError, match="shape"):
        coder.encode(np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(EntropyCodingError, match="integers"):
        coder.encode(np.zeros((2, 4)))
    with pytest.raises(EntropyCodingError):
        ChannelTable.from_json({"offset": 0, "freqs": [1, 2, 3]})


def test_decoding_with_the_wrong_length_is_rejected():
    coder = LatentCoder(_tables(1))
    payload = coder.encode(np.zeros((1, 50), dtype=np.int64) + 1)
    with pytest.raises(EntropyCodingError):
        coder.decode(payload, 10)  # trailing data left over
