"""The sweep driver resumes from its cache; the report builds from a tiny config."""
import json

import numpy as np
import pytest
import yaml

from training.study.config import StudyConfig
from training.study.report import build_report
from training.study.runner import expand, run_study
from training.study.splits import fold_dataset
from tests.study.conftest import tiny_study


def _refuse(run):
    raise AssertionError(f"{run.method.label} {run.point} fold {run.fold} recomputed instead of read from cache")


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    cfg = StudyConfig.from_dict(tiny_study(tmp))
    return tmp, cfg, run_study(cfg)


def test_folds_partition_the_synthetic_pool():
    data = {"kind": "gaussian", "n_windows": 10, "params": {"rho": 0.9, "samples": 64}}
    tests = [fold_dataset(data, f, 5).test for f in range(5)]
    pool = np.concatenate(tests)
    assert len(pool) == 10 and len(np.unique(pool[:, 0, 0, 0])) == 10
    d = fold_dataset(data, 0, 5)
    seen = {float(w[0, 0, 0]) for w in d.train}
    assert not seen & {float(w[0, 0, 0]) for w in d.test} and not seen & {float(w[0, 0, 0]) for w in d.val}


def test_every_run_is_measured_and_cached(tiny_records):
    tmp, cfg, records = tiny_records
    assert len(records) == len(expand(cfg)) == 2 * (3 + 3 + 2 + 2)
    assert all("metrics" in r and not r["cached"] for r in records)
    # CPU seconds are recorded per run (what the report sums to argue wall time on idle cores).
    assert all(0 < r["cpu_seconds"] <= r["wall_seconds"] * 1.5 + 0.5 for r in records)
    assert len(list((tmp / "cache").glob("*.json"))) == len(records)


def test_a_rerun_resumes_from_the_cache(tiny_records):
    _, cfg, records = tiny_records
    again = run_study(cfg, executor=_refuse)
    assert all(r["cached"] for r in again)
    assert [r["metrics"]["rate_sum"] for r in again] == [r["metrics"]["rate_sum"] for r in records]


def test_a_changed_point_is_computed_and_the_rest_read_back(tiny_records, tmp_path):
    tmp, _, _ = tiny_records
    raw = tiny_study(tmp)
    raw["datasets"][0]["methods"][0]["grid"]["step"].append(2.0)
    computed = []

    def execute_new(run):
        from training.study.runner import execute

        computed.append((run.method.label, run.point, run.fold))
        return execute(run)

    records = run_study(StudyConfig.from_dict(raw), executor=execute_new)
    assert sorted(computed, key=str) == sorted([("sq-separate", {"step": 2.0}, 0), ("sq-separate", {"step": 2.0}, 1)],
                                               key=str)
    assert sum(not r["cached"] for r in records) == 2


def test_two_worker_processes_give_the_same_records_as_one(tmp_path):
    methods = [{"label": "sq", "baseline": "sq", "grid": {"step": [0.5, 1.0]}}]
    one = run_study(StudyConfig.from_dict(tiny_study(tmp_path / "a", methods=methods)))
    two = run_study(StudyConfig.from_dict(tiny_study(tmp_path / "b", methods=methods)), workers=2)
    assert [r["metrics"]["payload_bytes"] for r in one] == [r["metrics"]["payload_bytes"] for r in two]
    assert [r["fold"] for r in two] == [0, 0, 1, 1]


def test_a_failed_run_is_reported_and_not_cached(tmp_path):
    raw = tiny_study(tmp_path, methods=[{"label": "bad", "baseline": "sq-modulo", "grid": {"step": [-1.0]}}],
                     folds=[0])
    records = run_study(StudyConfig.from_dict(raw))
    assert "error" in records[0] and not list((tmp_path / "cache").glob("*.json"))


def test_the_report_builds_with_plots_tables_and_statements(tiny_records):
    tmp, cfg, records = tiny_records
    path = build_report(cfg, records, "ndsc study --config tiny.yaml", 1.0)
    text = path.read_text()
    for needle in ("# Study report: tiny", "## g", "rd_g.png", "### Every point", "BD-rate vs sq-separate",
                   "Berger–Tung (bound)", "### Targets", "### Encoder maps", "The seed's bound",
                   "Where MI regularisation helps", "joint β=+0.1** vs **joint β=0", "### Efficiency",
                   "edge ONNX encode ms/window", "s CPU (process time"):
        assert needle in text, needle
    assert (tmp / "report" / "rd_g.png").stat().st_size > 1000
    assert (tmp / "report" / "encoder_maps_g.png").exists()
    results = json.loads((tmp / "report" / "results.json").read_text())
    assert len(results) == len(records)
    # Joint MMSE decoding of the same scalar symbols saves bits at equal quality (BD-rate < 0 per fold).
    from training.study.report import DatasetReport

    rep = DatasetReport(cfg.datasets[0], records)
    bd = rep.bd("sq", "sq-separate")
    assert len(bd) == 2 and all(x < -1.0 for x in bd)


def test_the_cli_writes_the_report(tmp_path, capsys):
    from app.cli import main

    raw = tiny_study(tmp_path, methods=[{"label": "sq-separate", "baseline": "sq-separate",
                                         "grid": {"step": [0.5, 1.0]}}], folds=[0])
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["study", "--config", str(config)]) == 0
    assert (tmp_path / "report" / "report.md").exists()
    assert main(["study", "--config", str(config), "--report-only"]) == 0
    assert "2 runs (2 from cache, 0 failed)" in capsys.readouterr().out
