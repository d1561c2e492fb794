"""Swapping a real ECG into the compose demo is one documented change.

The documented commands are read from the compose files' own comments, applied
(an env var; an override file with a mounted WFDB record), and every edge
service's resulting NDSC_SOURCE is opened with the real readers against the
bundle its container would load: one lead group per node, windows of the
bundle's shape at the bundle's real-time pace.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.deploy.conftest import COMPOSE, DEPLOY, LocalStack, load_compose


def _documented(path, variable: str) -> str:
    (value,) = set(re.findall(rf"{variable}='([^']+)'", path.read_text()))
    return value


def _documented_plain(path, variable: str) -> str:
    (value,) = set(re.findall(rf"{variable}=(/\S+)", path.read_text()))
    return value


def _edge_windows(model: dict, mounts: dict[str, str] | None = None) -> list[tuple[str, tuple, np.ndarray]]:
    from ndsc.bundle import load_bundle
    from ndsc.sources.base import open_source

    stack = LocalStack.from_compose(model, workdir=None)
    out = []
    for name, svc in stack.services.items():
        if svc.argv[-1] != "edge":
            continue
        bundle = load_bundle(svc.env["NDSC_BUNDLE"])
        spec = svc.env["NDSC_SOURCE"]
        for inside, outside in (mounts or {}).items():
            spec = spec.replace(f":{inside}/", f":{outside}/")
        index = int(svc.env["NDSC_SOURCE_INDEX"])
        shape = tuple(bundle.sources[index].input_shape)
        source = open_source(spec, index, shape)
        assert source.window_period == pytest.approx(shape[-1] / bundle.sample_rate), (name, spec)
        it = source.windows()
        data = np.stack([next(it).data for _ in range(3)])
        assert data.shape == (3, *shape) and np.isfinite(data).all(), (name, spec)
        out.append((name, source.channel_names, data))
    return out


def _check_lead_groups(windows) -> None:
    assert len(windows) >= 4
    leads = [tuple(channels) for _, channels, _ in windows]
    assert len(set(leads)) == len(leads), f"nodes must replay different lead groups: {leads}"
    # real, distinct signals per node (not one lead group copied four times)
    firsts = [w[0].ravel() for _, _, w in windows]
    assert all(not np.allclose(firsts[0], f) for f in firsts[1:])


def test_compose_replays_the_real_12_lead_ecg_that_ships_with_pydicom_by_default():
    model = load_compose(COMPOSE)
    assert all(svc["environment"]["NDSC_SOURCE"].startswith("dicom:pydicom")
               for svc in model["services"].values() if svc.get("command") == ["edge"])
    _check_lead_groups(_edge_windows(model))


def test_the_documented_variables_swap_in_the_synthetic_patient_with_its_bundle():
    spec = _documented(COMPOSE, "NDSC_ECG_SOURCE")
    bundle = _documented_plain(COMPOSE, "NDSC_BUNDLE")
    assert spec.startswith("ecg-synth:") and bundle.endswith("/ecg-synth-quick")
    model = load_compose(COMPOSE, env={"NDSC_ECG_SOURCE": spec, "NDSC_BUNDLE": bundle})
    _check_lead_groups(_edge_windows(model))


def test_the_override_file_replays_a_mounted_wfdb_record(tmp_path):
    import wfdb

    from ndsc.sources.ecg import read_dicom

    # a real 12-lead record written as WFDB (.hea + .dat), as PhysioNet serves them
    record = read_dicom("pydicom")
    wfdb.wrsamp("E00001", fs=record.fs, units=["mV"] * len(record.leads), sig_name=list(record.leads),
                p_signal=record.signal.T.astype(np.float64), fmt=["16"] * len(record.leads),
                write_dir=str(tmp_path))
    env = {"NDSC_ECG_DIR": str(tmp_path), "NDSC_ECG_RECORD": "E00001"}
    model = load_compose(COMPOSE, DEPLOY / "compose.ecg.yaml", env=env)
    mounts = {}
    edges = [n for n, svc in model["services"].items() if svc.get("command") == ["edge"]]
    for name in edges:
        for volume in model["services"][name].get("volumes", []):
            outside, inside = volume.split(":")[:2]
            if outside not in model.get("volumes", {}):  # bind mounts; the named one holds credentials
                mounts[inside] = outside
    assert mounts == {"/data": str(tmp_path)}
    windows = _edge_windows(model, mounts)
    _check_lead_groups(windows)
    assert all("wfdb:/data/E00001" in model["services"][n]["environment"]["NDSC_SOURCE"] for n, _, _ in windows)


def test_the_bundle_override_points_every_ndsc_service_at_one_mounted_bundle(tmp_path):
    model = load_compose(COMPOSE, DEPLOY / "compose.bundle.yaml", env={"NDSC_BUNDLE_DIR": str(tmp_path)})
    stack = LocalStack.from_compose(model, workdir=None)
    bundles = {svc.env["NDSC_BUNDLE"] for svc in stack.services.values()}
    assert bundles == {"/bundle"}
    for name, svc in model["services"].items():
        if name in stack.services:
            assert f"{tmp_path}:/bundle:ro" in svc["volumes"]
    assert json.loads(json.dumps(model))  # plain data, as docker-compose would see it
