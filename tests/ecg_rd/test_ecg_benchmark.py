"""The ECG R–D analysis and measurement (training/ecg_rd.py), the wavelet-zstd anchor, and the
benchmark's command-line plumbing (benchmarks/ecg.py, loaded by path), on real bytes."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from tests.conftest import load_benchmark
from training import ecg_rd


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ecg")


def _curve(bits, prdn, key=ecg_rd.POOLED):
    return [{"bits_per_sample_per_lead": b, key: q} for b, q in zip(bits, prdn)]


def test_savings_and_bd_rate_recover_a_known_rate_ratio():
    # Anchor: log-rate linear in PRDN; test: 0.7 × the anchor's rate at every PRDN.
    prdn = np.array([10.0, 15.0, 20.0, 25.0])
    anchor = _curve(np.exp(-0.08 * prdn), prdn)
    test = _curve(0.7 * np.exp(-0.08 * np.array([12.0, 18.0, 30.0])), [12.0, 18.0, 30.0])
    savings = ecg_rd.savings_at_equal_prdn(test, anchor)
    assert sorted(s["prdn_percent"] for s in savings) == [12.0, 18.0]  # 30 % lies outside the anchor curve
    assert all(abs(s["saving_percent"] - 30.0) < 1e-6 for s in savings)
    bd = ecg_rd.bd_saving(test, anchor)
    assert (bd["lo"], bd["hi"]) == (12.0, 25.0)
    assert bd["saving_percent"] == pytest.approx(30.0, abs=0.5)
    narrowed = ecg_rd.bd_saving(test, anchor, lo=14.0, hi=20.0)
    assert (narrowed["lo"], narrowed["hi"]) == (14.0, 20.0)
    assert narrowed["saving_percent"] == pytest.approx(30.0, abs=0.5)
    assert np.isnan(ecg_rd.bd_saving(test, [])["saving_percent"])


def test_points_above_the_anchor_curve_are_found_on_the_chosen_prdn():
    key = ecg_rd.MEAN_OF_LEADS
    anchor = _curve([0.4, 0.8, 1.6], [12.0, 6.0, 3.0], key)
    test = _curve([0.3, 0.9, 1.0, 5.0], [12.0, 6.0, 20.0, 1.0], key)
    above = ecg_rd.points_above_curve(test, anchor, key)
    # 0.9 bits at 6 % needs more than the anchor's 0.8; 20 % and 1 % lie outside its range.
    assert [p["bits_per_sample_per_lead"] for p in above] == [0.9]


def test_clinical_point_is_the_cheapest_within_both_limits():
    pts = [{"bits_per_sample_per_lead": b, ecg_rd.MEAN_OF_LEADS: m, ecg_rd.WORST_LEAD: w, "quality": q}
           for b, m, w, q in [(0.5, 5.5, 8.0, "3"), (0.7, 4.8, 9.5, "4"), (0.9, 4.0, 8.5, "5"), (1.4, 2.0, 3.0, "6")]]
    assert ecg_rd.clinical_point(pts)["quality"] == "5"
    assert ecg_rd.clinical_point(pts[:2]) is None


def test_best_prdn_at_half_a_bit():
    pts = _curve([0.3, 0.45, 0.8], [25.0, 20.0, 12.0])
    best = ecg_rd.best_prdn_at_rate(pts, 0.5)
    assert best["measured_prdn_percent"] == 20.0 and best["measured_bits"] == 0.45
    expected = 20.0 + (12.0 - 20.0) * (np.log(0.5) - np.log(0.45)) / (np.log(0.8) - np.log(0.45))
    assert best["interpolated_prdn_percent"] == pytest.approx(expected)
    above = ecg_rd.best_prdn_at_rate(_curve([0.6, 0.9], [10.0, 8.0]), 0.5)
    assert np.isnan(above["measured_prdn_percent"]) and np.isnan(above["interpolated_prdn_percent"])


def test_frontier_drops_dominated_and_diverged_points():
    pts = _curve([0.43, 0.65, 0.79, 0.60], [18.7, 18.1, 1331.9, 18.7])
    front = ecg_rd.frontier(pts)
    assert [(p["bits_per_sample_per_lead"], p["prdn_percent"]) for p in front] == [(0.43, 18.7), (0.65, 18.1)]
    sep = _curve([0.6, 0.9, 0.95], [18.0, 16.0, 900.0])
    dist = _curve([0.4, 0.6], [18.0, 16.0])
    assert ecg_rd.bd_saving(dist, sep)["saving_percent"] == pytest.approx(100 * (1 - 0.4 / 0.6), abs=0.5)


def test_overrides_reach_the_config_and_name_the_bundle(bench):
    from training.presets import get_preset

    overrides = bench.parse_overrides(["lr=0.003", "model.hidden=32"])
    assert overrides == {"lr": 0.003, "model.hidden": 32}
    cfg = get_preset("ecg-12lead")
    bench.apply_overrides(cfg, overrides)
    assert cfg.lr == 0.003 and cfg.model.hidden == 32
    with pytest.raises(ValueError, match="unknown config field"):
        bench.apply_overrides(cfg, {"model.no_such_field": 1})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_overrides(["lr"])
    assert bench.bundle_name("ecg-12lead", "separate", 2, 800, {}) == "ecg-12lead-separate-fold2-steps800"
    assert bench.bundle_name("ecg-12lead", "distributed", None, None, overrides) == \
        "ecg-12lead-distributed-lr0.003-hidden32"


def _pydicom_windows():
    from ndsc.sources.synthetic import STANDARD_LEADS
    from training.ecg_eval import record_windows

    return list(STANDARD_LEADS), record_windows("pydicom", list(STANDARD_LEADS), 3, 500.0, 1024)


def test_wavelet_anchor_bytes_and_prdn_match_an_independent_computation():
    """db4 / periodization / 6 levels, one step for all leads, zstd-19, 4-byte header: recomputed here."""
    import pywt
    import zstandard

    from training.data import JointDataset

    leads, windows = _pydicom_windows()
    step = 0.04
    data = JointDataset(train=windows, val=windows, test=windows, modality="ecg", source_names=["a"] * 4,
                        channel_names=[leads[i:i + 3] for i in range(0, 12, 3)], sample_rate=500.0,
                        edge_source="dicom:pydicom")
    row = ecg_rd.measure_wavelet(data, windows, leads, 500.0, step)

    total_bytes, err2, centred2 = 0, np.zeros(12), np.zeros(12)
    for w in windows:
        x = w.reshape(12, -1).astype(np.float64)
        coeffs = [pywt.wavedec(lead, "db4", mode="periodization", level=6) for lead in x]
        q = [[np.rint(c / step) for c in cs] for cs in coeffs]
        ints = np.concatenate([np.concatenate(cs) for cs in q]).astype("<i2")
        total_bytes += 4 + len(zstandard.ZstdCompressor(level=19).compress(ints.tobytes()))
        rec = np.stack([pywt.waverec([c * step for c in cs], "db4", mode="periodization") for cs in q])
        err2 += ((x - rec) ** 2).sum(axis=1)
        centred2 += ((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    per_lead = 100 * np.sqrt(err2 / centred2)
    assert row["payload_bytes"] == total_bytes
    assert row["bits_per_sample_per_lead"] == pytest.approx(8 * total_bytes / windows.size)
    assert row["prdn_mean_of_leads_percent"] == pytest.approx(per_lead.mean(), rel=1e-4)
    assert row["prdn_worst_lead_percent"] == pytest.approx(per_lead.max(), rel=1e-4)
    assert row["prdn_percent"] == pytest.approx(100 * np.sqrt(err2.sum() / centred2.sum()), rel=1e-4)
    assert struct.unpack("<f", bytes(4))[0] == 0.0  # the header is a plain little-endian float32


def test_wavelet_anchor_round_trips_and_widens_when_coefficients_overflow_int16():
    from training.baselines.conventional import wavelet_zstd_decode, wavelet_zstd_encode

    _, windows = _pydicom_windows()
    x = windows[0].reshape(12, -1)
    fine = wavelet_zstd_encode(x, 1e-5)  # coefficients beyond int16: stored as int32
    assert struct.unpack("<f", fine[:4])[0] < 0
    assert np.abs(wavelet_zstd_decode(fine, x.shape) - x).max() < 1e-4
    coarse = wavelet_zstd_encode(x, 0.05)
    assert len(coarse) < len(fine)
    assert np.abs(wavelet_zstd_decode(coarse, x.shape) - x).max() < 0.2


def test_dct_zstd_rows_come_from_real_bytes():
    from models.config import DataConfig
    from training.data import build_dataset

    data = build_dataset(DataConfig(kind="ecg-synth", n_windows=30, params={"group_size": 3, "samples": 256}))
    windows, leads = data.test, data.info["leads"]
    fine = ecg_rd.measure_dct(data, windows, leads, data.sample_rate, 0.005)
    coarse = ecg_rd.measure_dct(data, windows, leads, data.sample_rate, 0.1)
    assert coarse["bits_per_sample_per_lead"] < fine["bits_per_sample_per_lead"]
    assert fine["prdn_percent"] < coarse["prdn_percent"]
    assert fine["payload_bytes"] * 8 == pytest.approx(fine["bits_per_sample_per_lead"] * windows.size)
    assert len(fine["per_lead"]) == 12
