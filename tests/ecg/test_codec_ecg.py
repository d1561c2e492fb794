"""ECG codec on real records: training, real-bit figures, the shipped bundle, the CLI."""
import json

import numpy as np
import pytest

from ndsc.bundle import load_bundle
from training.ecg_eval import ecg_report, lossless_reference, record_windows, to_int16, to_leads


def test_a_small_ecg_model_trains_and_reports_real_bits_and_prdn(ecg_bundle):
    path, report = ecg_bundle
    bundle = load_bundle(path)
    assert bundle.modality == "ecg" and bundle.sample_rate == 500.0 and bundle.n_sources == 4
    assert [s.channel_names for s in bundle.sources] == [("I", "II", "III"), ("aVR", "aVL", "aVF"),
                                                         ("V1", "V2", "V3"), ("V4", "V5", "V6")]
    test = bundle.evaluation["test"]
    assert test["windows"] > 0 and test["payload_bytes"] > 0
    samples = test["windows"] * 3 * 1024
    for s in test["sources"]:  # real bits: 8 × the bytes the coder wrote
        assert s["bits_per_sample"] == pytest.approx(8 * s["payload_bytes"] / samples)
    # 40 steps on one 10 s record: far from a good codec (its priors have barely left their start, so the
    # critically sampled latents still cost a few bits each), but it must already beat raw 16-bit samples
    # and "predict nothing" (PRDN 100 %).
    assert 0 < test["bits_per_sample_mean"] < 8 and test["overall_prdn_percent"] < 90
    assert bundle.extra["data_info"]["split"].startswith("time")  # one patient: split in time, said so


def test_a_bundle_trained_on_physionet_records_records_its_patient_split(ecg_data, tmp_path):
    from tests.ecg.conftest import tiny_ecg_config
    from training.pipeline import train_and_export

    records = [ecg_data / "ptb-xl" / "cinc2021_format", ecg_data / "georgia-12lead"]
    path, _ = train_and_export(tiny_ecg_config(records, steps=2), tmp_path / "ecg")
    split = load_bundle(path).extra["data_info"]
    assert split["split"] == "patient" and not set(split["records"]["train"]) & set(split["records"]["test"])


def test_ecg_report_counts_bytes_and_per_lead_distortion(ecg_bundle):
    from training.evaluate import evaluate_bundle

    path, _ = ecg_bundle
    leads = [l for s in load_bundle(path).sources for l in s.channel_names]
    windows = record_windows("pydicom", leads, 3, 500.0, 1024)
    result = evaluate_bundle(path, windows=windows)
    r = ecg_report(result, windows, leads, 500.0)
    total = sum(len(p) for row in result["payloads"] for p in row)
    assert r["payload_bytes"] == total
    assert r["bits_per_sample_per_lead"] == pytest.approx(8 * total / windows.size)
    assert r["kbit_per_s"] == pytest.approx(8 * total / (len(windows) * 1024 / 500) / 1000)
    assert [p["lead"] for p in r["per_lead"]] == leads
    err = windows[:, 0, 1] - result["x_hat"][:, 0, 1]  # lead II
    centred = windows[:, 0, 1] - windows[:, 0, 1].mean(axis=-1, keepdims=True)
    assert r["per_lead"][1]["prdn_percent"] == pytest.approx(100 * np.sqrt((err**2).sum() / (centred**2).sum()), rel=1e-5)
    assert r["raw_kbit_per_s"] == 16 * 12 * 500 / 1000


def test_lossless_references_really_are_lossless():
    import io

    import soundfile as sf

    windows = record_windows("pydicom", ["I", "II", "III"], 3, 500.0, 1024)
    ints = to_int16(to_leads(windows))
    buf = io.BytesIO()
    sf.write(buf, ints[1], 500, format="FLAC", subtype="PCM_16")
    buf.seek(0)
    assert np.array_equal(sf.read(buf, dtype="int16")[0], ints[1])
    ref = lossless_reference(windows, 500.0)
    assert 1.0 < ref["flac_bits_per_sample"] < 16 and 1.0 < ref["zstd_bits_per_sample"] < 16


def test_the_shipped_ecg_bundle_does_what_its_manifest_claims():
    from ndsc.bundles import BUNDLES_DIR
    from training.evaluate import evaluate_bundle

    path = BUNDLES_DIR / "ecg-12lead"
    bundle = load_bundle(path)
    assert sum(f.stat().st_size for f in path.iterdir()) < 2_000_000
    assert len(bundle.quality_names) >= 4 and bundle.default_quality in bundle.quality_names
    claimed = bundle.evaluation["pydicom_record"]
    leads = [l for s in bundle.sources for l in s.channel_names]
    windows = record_windows("pydicom", leads, 3, bundle.sample_rate, 1024)
    # The default point and the finest one reproduce their recorded bytes and PRDN on this unseen patient.
    for quality in (bundle.default_quality, bundle.quality_names[-1]):
        r = ecg_report(evaluate_bundle(path, windows=windows, quality=quality), windows, leads, bundle.sample_rate)
        point = claimed["points"][quality]
        assert r["payload_bytes"] == point["payload_bytes"]
        assert r["prdn_mean_of_leads_percent"] == pytest.approx(point["prdn_mean_of_leads_percent"], rel=1e-4)
    # Points are ordered: more bits, less distortion.
    rates = [claimed["points"][q]["bits_per_sample_per_lead"] for q in bundle.quality_names]
    prdn = [claimed["points"][q]["prdn_mean_of_leads_percent"] for q in bundle.quality_names]
    assert rates == sorted(rates) and prdn == sorted(prdn, reverse=True)
    # Held-out patients: the default point is clinical-grade and needs fewer bits than wavelet-zstd.
    test = bundle.evaluation["test_points"]["points"][bundle.default_quality]
    assert test["prdn_mean_of_leads_percent"] <= 5.0 and test["prdn_worst_lead_percent"] <= 9.0
    assert test["bits_per_sample_per_lead"] <= 1.0
    assert test["bits_per_sample_per_lead"] < test["wavelet_zstd_bits_at_same_mean_prdn"]
    assert bundle.extra["edge_source"].startswith("dicom:pydicom")
    train_records = bundle.extra["data_info"]["records"]["train"]
    assert train_records and "pydicom" not in train_records


def test_ecg_eval_cli_prints_rate_and_prdn_per_lead(ecg_bundle, capsys):
    from app.cli import main

    main(["ecg-eval", str(ecg_bundle[0]), "pydicom", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert r["windows"] == 4 and len(r["per_lead"]) == 12 and r["flac_bits_per_sample"] > r["bits_per_sample_per_lead"]
