import numpy as np
import pytest

from ndsc.sources import SourceError, open_source
from ndsc.sources.ecg import (RecordSource, canonical_lead, cut_windows, parse_options, read_dicom, read_record,
                              read_wfdb, resample_signal)
from ndsc.sources.synthetic import STANDARD_LEADS


def _einthoven_residual(rec) -> float:
    i, ii, iii = (rec.signal[rec.leads.index(l)] for l in ("I", "II", "III"))
    return float(np.std(iii - (ii - i)) / np.std(ii))


def test_the_pydicom_ecg_is_12_leads_in_mv():
    rec = read_dicom("pydicom")
    assert rec.leads == STANDARD_LEADS and rec.fs == 1000.0 and rec.signal.shape == (12, 10000)
    peak = np.abs(rec.signal).max()
    assert 0.5 < peak < 5.0  # an R wave of a few mV, not µV or adu
    assert _einthoven_residual(rec) < 0.05  # a real recording obeys III = II - I


def test_ptbxl_record_reads_with_its_lead_names_and_rate(ecg_data):
    rec = read_wfdb(ecg_data / "ptb-xl" / "cinc2021_format" / "HR06000")
    assert rec.leads == STANDARD_LEADS and rec.fs == 500.0 and rec.signal.shape == (12, 5000)
    assert 0.3 < np.abs(rec.signal).max() < 10.0
    assert _einthoven_residual(rec) < 0.05


def test_ptb_diagnostic_lowercase_leads_become_standard(ecg_data):
    rec = read_record(ecg_data / "ptbdb" / "patient001" / "s0010_re")
    assert rec.leads[:12] == STANDARD_LEADS and rec.leads[12:] == ("vx", "vy", "vz")
    assert rec.patient == "patient001" and rec.fs == 1000.0
    half = rec.select(["v1", "AVR"]).resample(500)
    assert half.leads == ("V1", "aVR") and half.signal.shape == (2, 19200) and half.fs == 500.0


def test_microvolt_records_are_converted_to_mv(tmp_path):
    import wfdb

    t = np.arange(2000) / 500
    uv = np.stack([800 * np.sin(2 * np.pi * 1.2 * t), -400 * np.sin(2 * np.pi * 1.2 * t)]).T
    wfdb.wrsamp("rec", fs=500, units=["uV", "uV"], sig_name=["II", "V2"], p_signal=uv, fmt=["16", "16"],
                adc_gain=[1.0, 1.0], baseline=[0, 0], write_dir=str(tmp_path))
    rec = read_wfdb(tmp_path / "rec")
    assert rec.leads == ("II", "V2")
    assert np.abs(rec.signal[0]).max() == pytest.approx(0.8, abs=0.002)


def test_non_voltage_channels_are_dropped(ecg_data):
    rec = read_wfdb(ecg_data / "challenge-2015" / "v102s")  # II, V, PLETH (NU), RESP (NU)
    assert rec.leads == ("II", "V") and rec.fs == 250.0


def test_resampling_keeps_the_waveform():
    t = np.arange(5000) / 1000
    x = np.sin(2 * np.pi * 3 * t)[None].astype(np.float32)
    y = resample_signal(x, 1000, 500)
    assert y.shape == (1, 2500)
    ref = np.sin(2 * np.pi * 3 * np.arange(2500) / 500)
    assert np.abs(y[0, 100:-100] - ref[100:-100]).max() < 1e-3
    z = resample_signal(x, 1000, 360)  # non-integer ratio (MIT-BIH rate)
    assert z.shape == (1, 1800)


def test_windows_have_length_and_hop():
    x = np.arange(20, dtype=np.float32).reshape(2, 10)
    w = cut_windows(x, 4, 3)
    assert w.shape == (3, 2, 4) and w[1, 0].tolist() == [3, 4, 5, 6] and w[2, 1].tolist() == [16, 17, 18, 19]
    assert cut_windows(x, 11).shape == (0, 2, 11)


def test_lead_names_and_options_parse():
    assert [canonical_lead(n) for n in ("i", "AVR", "Lead V1", "Lead I (Einthoven)", "MLII")] == \
        ["I", "aVR", "V1", "I", "MLII"]
    assert parse_options("leads=I,II,III,loop=1") == {"leads": "I,II,III", "loop": "1"}
    with pytest.raises(SourceError, match="key=value"):
        parse_options("I,II")


def test_wfdb_source_replays_named_leads_and_loops(pydicom_wfdb):
    spec = f"wfdb:{pydicom_wfdb}#leads=V1,V2,V3,loop=1,count=9"
    src = open_source(spec, 0, (3, 1024))
    assert isinstance(src, RecordSource) and src.channel_names == ("V1", "V2", "V3")
    assert src.window_period == pytest.approx(1024 / 500)
    wins = list(src.windows())
    assert [w.index for w in wins] == list(range(9))  # 4 windows per 10 s record, then it starts over
    assert np.array_equal(wins[4].data, wins[0].data) and wins[0].data.shape == (3, 1024)
    rec = read_wfdb(pydicom_wfdb).select(["V1", "V2", "V3"])
    assert np.allclose(wins[1].data, rec.signal[:, 1024:2048])


def test_dicom_source_groups_leads_by_node_index():
    src = open_source("dicom:pydicom#count=2", 2, (3, 1024))
    assert src.channel_names == ("V1", "V2", "V3")
    (w0, w1) = list(src.windows())
    assert w0.data.shape == (3, 1024) and np.isfinite(w1.data).all()


def test_bad_ecg_specs_are_clear_errors(pydicom_wfdb):
    rec = str(pydicom_wfdb)
    with pytest.raises(SourceError, match="no lead"):
        open_source(f"wfdb:{rec}#leads=I,II,X9", 0, (3, 1024))
    with pytest.raises(SourceError, match="takes 3"):
        open_source(f"wfdb:{rec}#leads=I,II", 0, (3, 1024))
    with pytest.raises(SourceError, match="unknown ECG source options"):
        open_source(f"wfdb:{rec}#speed=2", 0, (3, 1024))
    with pytest.raises(SourceError, match="no WFDB header"):
        open_source("wfdb:/nonexistent/rec", 0, (3, 1024))
    with pytest.raises(SourceError, match="out of range"):
        open_source(f"wfdb:{rec}", 4, (3, 1024))
    with pytest.raises(SourceError, match="shorter than one window"):
        open_source(f"wfdb:{rec}", 0, (3, 8192))


def test_windows_with_missing_samples_are_counted_in_a_written_record(tmp_path):
    from tests.ecg.conftest import write_wfdb

    rec = read_dicom("pydicom").select(["II", "V1"]).resample(250)  # 10 s: 2500 samples
    signal = rec.signal.astype(np.float64)
    signal[1, 700:720] = np.nan  # a lead off for 80 ms inside the 3rd window of 250
    path = write_wfdb(tmp_path, "gap", signal, ("II", "V"), 250)
    src = open_source(f"wfdb:{path}#leads=II,V,fs=250", 0, (2, 250))
    wins = list(src.windows())
    bad = [w.index for w in wins if not np.isfinite(w.data).all()]
    assert len(wins) == 10 and bad == [2] and src.missing_windows == 1


def test_windows_with_missing_samples_are_counted(ecg_data):
    src = open_source(f"wfdb:{ecg_data}/challenge-2015/v102s#leads=II,V,fs=250", 0, (2, 2500))
    wins = list(src.windows())
    bad = [w.index for w in wins if not np.isfinite(w.data).all()]
    assert len(wins) == 30 and 0 < len(bad) == src.missing_windows  # the node's check_window skips these
