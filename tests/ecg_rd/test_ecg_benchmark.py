"""benchmarks/ecg.py: the equal-PRDN comparisons, the 0.5 bit/sample/lead read-out and the
dct-zstd rows it prints (real bytes on synthetic 12-lead ECG)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ecg")


def _curve(bits, prdn):
    return [{"bits_per_sample_per_lead": b, "prdn_percent": q} for b, q in zip(bits, prdn)]


def test_savings_and_bd_rate_recover_a_known_rate_ratio(bench):
    # Separate: log-rate linear in PRDN; distributed: 0.7 × the separate rate at every PRDN.
    prdn = np.array([10.0, 15.0, 20.0, 25.0])
    sep_bits = np.exp(-0.08 * prdn)
    sep = _curve(sep_bits, prdn)
    dist = _curve(0.7 * np.exp(-0.08 * np.array([12.0, 18.0, 30.0])), [12.0, 18.0, 30.0])
    savings = bench.savings_at_equal_prdn(dist, sep)
    assert sorted(s["prdn_percent"] for s in savings) == [12.0, 18.0]  # 30 % lies outside the separate curve
    assert all(abs(s["saving_percent"] - 30.0) < 1e-6 for s in savings)
    bd = bench.bd_saving(dist, sep)
    assert (bd["lo"], bd["hi"]) == (12.0, 25.0)
    assert bd["saving_percent"] == pytest.approx(30.0, abs=0.5)
    assert np.isnan(bench.bd_saving(dist, [])["saving_percent"])


def test_best_prdn_at_half_a_bit(bench):
    pts = _curve([0.3, 0.45, 0.8], [25.0, 20.0, 12.0])
    best = bench.best_prdn_at_rate(pts, 0.5)
    assert best["measured_prdn_percent"] == 20.0 and best["measured_bits"] == 0.45
    expected = 20.0 + (12.0 - 20.0) * (np.log(0.5) - np.log(0.45)) / (np.log(0.8) - np.log(0.45))
    assert best["interpolated_prdn_percent"] == pytest.approx(expected)
    above = bench.best_prdn_at_rate(_curve([0.6, 0.9], [10.0, 8.0]), 0.5)
    assert np.isnan(above["measured_prdn_percent"]) and np.isnan(above["interpolated_prdn_percent"])


def test_overrides_reach_the_config_and_name_the_bundle(bench):
    from training.presets import get_preset

    overrides = bench.parse_overrides(["lr=0.003", "model.latent_gain=true"])
    assert overrides == {"lr": 0.003, "model.latent_gain": True}
    cfg = get_preset("ecg-4x3")
    bench.apply_overrides(cfg, overrides)
    assert cfg.lr == 0.003 and cfg.model.latent_gain is True
    with pytest.raises(ValueError, match="unknown config field"):
        bench.apply_overrides(cfg, {"model.no_such_field": 1})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_overrides(["lr"])
    # Without overrides the names stay those of bundles trained before overrides existed.
    assert bench.bundle_name("separate", 3, 0.0005, 0.1, {}) == "g3-separate-lam0.0005-s0.1"
    assert bench.bundle_name("separate", 3, 0.0005, 0.1, overrides) == "g3-separate-lam0.0005-s0.1-lr0.003-latent_gaintrue"


def test_dct_zstd_rows_come_from_real_bytes(bench):
    from training.config import DataConfig
    from training.data import build_dataset

    data = build_dataset(DataConfig(kind="ecg-synth", n_windows=30, params={"group_size": 3, "samples": 256}))
    windows, leads = data.test, data.info["leads"]
    fine = bench.measure_dct(data, windows, leads, data.sample_rate, 0.005)
    coarse = bench.measure_dct(data, windows, leads, data.sample_rate, 0.1)
    assert coarse["bits_per_sample_per_lead"] < fine["bits_per_sample_per_lead"]
    assert fine["prdn_percent"] < coarse["prdn_percent"]
    assert fine["payload_bytes"] * 8 == pytest.approx(fine["bits_per_sample_per_lead"] * windows.size)
    assert len(fine["per_lead"]) == 12


def test_frontier_drops_dominated_and_diverged_points(bench):
    pts = _curve([0.43, 0.65, 0.79, 0.60], [18.7, 18.1, 1331.9, 18.7])
    front = bench.frontier(pts)
    assert [(p["bits_per_sample_per_lead"], p["prdn_percent"]) for p in front] == [(0.43, 18.7), (0.65, 18.1)]
    # A diverged separate point must not bend the separate curve: the BD-rate ignores it.
    sep = _curve([0.6, 0.9, 0.95], [18.0, 16.0, 900.0])
    dist = _curve([0.4, 0.6], [18.0, 16.0])
    assert bench.bd_saving(dist, sep)["saving_percent"] == pytest.approx(100 * (1 - 0.4 / 0.6), abs=0.5)


def test_decoder_option_names_only_the_distributed_bundle(bench):
    assert bench.bundle_name("distributed", 3, 0.0005, 0.03, {}, "ecg-joint-wide") == \
        "g3-distributed-ecg-joint-wide-lam0.0005-s0.03"
    assert bench.bundle_name("separate", 3, 0.0005, 0.03, {}, "ecg-joint-wide") == "g3-separate-lam0.0005-s0.03"
