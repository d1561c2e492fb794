import math

import numpy as np
import pytest

from training.study.bdrate import bd_rate, rate_at

RATES = np.array([0.5, 1.0, 2.0, 4.0])
QUALITY = np.array([30.0, 33.0, 36.5, 40.0])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_a_curve_against_itself_saves_nothing(method):
    assert bd_rate(RATES, QUALITY, RATES, QUALITY, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_twenty_percent_fewer_bits_at_every_quality_is_minus_twenty(method):
    assert bd_rate(RATES, QUALITY, 0.8 * RATES, QUALITY, method) == pytest.approx(-20.0, abs=1e-6)


def test_a_shift_in_quality_is_measured_over_the_overlap_only():
    # Test curve reaches each quality 1 dB earlier: on a curve with slope 1 dB per 2^(1/3.3) the
    # saving is the same everywhere, so pchip must give the exact log-linear answer.
    q = 10 * np.log10(RATES) * 3 + 30  # log-linear curve
    shifted = q + 1.0
    expected = (10 ** (-1.0 / 30) - 1) * 100
    assert bd_rate(RATES, q, RATES, shifted) == pytest.approx(expected, rel=1e-6)


def test_disjoint_quality_ranges_give_nan():
    assert math.isnan(bd_rate(RATES, QUALITY, RATES, QUALITY + 100))


def test_cubic_needs_four_points():
    with pytest.raises(ValueError, match="4 points"):
        bd_rate(RATES[:3], QUALITY[:3], RATES[:3], QUALITY[:3], "cubic")


def test_rate_at_interpolates_inside_and_refuses_to_extrapolate():
    assert rate_at(RATES, QUALITY, 33.0) == pytest.approx(1.0)
    assert 1.0 < rate_at(RATES, QUALITY, 35.0) < 2.0
    assert math.isnan(rate_at(RATES, QUALITY, 50.0))


def test_bd_rate_can_be_restricted_to_a_quality_range():
    # The test curve saves 20 % up to 36 dB and nothing from 42 dB: restricted to 30–33 dB, only the saving shows.
    rates = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
    quality = np.array([30.0, 33.0, 36.0, 39.0, 42.0, 45.0])
    test_rates = rates * np.array([0.8, 0.8, 0.8, 0.8, 1.0, 1.0])
    assert bd_rate(rates, quality, test_rates, quality, lo=30.0, hi=33.0) == pytest.approx(-20.0, abs=1e-6)
    assert bd_rate(rates, quality, test_rates, quality) > -20.0


def test_empty_and_lossless_curves_give_nan_not_errors():
    assert math.isnan(bd_rate([], [], RATES, QUALITY))
    assert math.isnan(rate_at([5.0], [math.inf], 30.0))


def test_better_quality_at_equal_rate_is_a_saving():
    rates, quality = np.array([0.1, 0.2, 0.4, 0.8]), np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(rates, quality, rates, quality + 1.0, lo=30, hi=36) < 0
