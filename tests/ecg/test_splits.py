from collections import defaultdict

import numpy as np
import pytest

from models.config import DataConfig
from training.data import build_dataset
from training.datasets_ecg import load_records, ptbxl_ecg_id, split_patients


@pytest.fixture(scope="module")
def facts(ecg_data):
    _, facts = load_records({"records": [str(ecg_data)]})
    return facts


def test_only_12_lead_records_at_250_hz_or_more_are_used(facts):
    names = {f["name"] for f in facts}
    assert "HR06000" in names and "E07500" in names and "s0010_re" in names and "JS20000" in names
    assert "00001_lr" not in names  # 100 Hz
    assert "100" not in names  # two leads


def test_patients_come_from_ptbxl_ptb_folders_and_duplicates(facts):
    by_name = {f["name"]: f for f in facts}
    assert ptbxl_ecg_id("HR06004") == 6004 and ptbxl_ecg_id("06004_hr") == 6004
    assert by_name["HR06004"]["patient"] == "ptbxl:2482" and by_name["HR06004"]["strat_fold"] == 10
    ptb = {by_name[n]["patient"] for n in ("s0010_re", "s0014lre", "s0016lre")}
    assert ptb == {"patient001:patient001"}
    assert by_name["E07509"]["patient"] == by_name["E07510"]["patient"]  # byte-identical recordings


def test_no_patient_is_on_two_sides_of_any_split(facts):
    for fold in (None, 0, 1, 2, 3, 4):
        side = split_patients(facts, seed=0, fold=fold)
        sides = defaultdict(set)
        for f in facts:
            sides[f["patient"]].add(side[f["patient"]])
        assert all(len(s) == 1 for s in sides.values())
        if fold is None:
            assert side["ptbxl:2482"] == "test"  # strat_fold 10 is PTB-XL's test fold
            assert side["ptbxl:17597"] == "train"  # strat_fold 5


def test_five_folds_test_every_patient_exactly_once(facts):
    tested = defaultdict(int)
    for fold in range(5):
        side = split_patients(facts, fold=fold)
        for patient, s in side.items():
            tested[patient] += s == "test"
    assert set(tested.values()) == {1}


def test_windows_of_a_test_patient_never_appear_in_training(ecg_data):
    d = build_dataset(DataConfig(kind="ecg", params={"records": [str(ecg_data)], "group_size": 3}))
    assert d.train.shape[1:] == (4, 3, 1024) and d.test.shape[1:] == (4, 3, 1024)
    assert d.channel_names[1] == ["aVR", "aVL", "aVF"] and d.sample_rate == 500.0
    assert not set(d.info["records"]["train"]) & set(d.info["records"]["test"])
    train = {w.tobytes() for w in d.train.reshape(len(d.train), -1)[:, :256]}
    assert not any(w.tobytes() in train for w in d.test.reshape(len(d.test), -1)[:, :256])


def test_the_pydicom_record_alone_is_split_in_time():
    d = build_dataset(DataConfig(kind="ecg", params={"group_size": 6}))
    assert d.train.shape[1:] == (2, 6, 1024) and len(d.test) >= 1
    assert d.info["split"].startswith("time") and d.edge_source == "dicom:pydicom"
    assert np.isfinite(d.train).all()
