"""The binned right view's BD-rate (benchmarks/stereo_binning_bd.py) from the checked-in reports.

The script reads the bench report's markdown table; if it read the wrong rows or pooled wrongly, the
joint decoder's BD-rate against separate coding that it computes would differ from the one the bench
itself printed in the report's summary. Binning's rate is the payload scaled per scene by its measured
saving, so a zero saving must give today's rate back, and the savings must weigh scenes by their bits.
"""
from __future__ import annotations

import re

import pytest

from tests.conftest import REPO, load_benchmark

REPORT = REPO / "docs" / "report" / "stereo_bench.md"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("stereo_binning_bd")


def test_the_parsed_rows_give_the_bench_reports_own_bd_rate(bench):
    from training.study.bdrate import bd_rate

    joint, separate = bench.bench_rows(REPORT, bench.JOINT), bench.bench_rows(REPORT, bench.SEPARATE)
    assert sorted(joint) == sorted(separate) and len(joint) >= 4
    points = sorted(joint)
    value = bd_rate([separate[p][0] for p in points], [separate[p][1] for p in points],
                    [joint[p][0] for p in points], [joint[p][1] for p in points])
    stated = re.search(r"left is side information\): BD-PSNR [^,]+, BD-rate ([+-−][\d.]+) %", REPORT.read_text())
    assert stated, "the report's summary line moved"
    assert value == pytest.approx(float(stated.group(1).replace("−", "-")), abs=0.05)


def test_binned_rate_scales_each_scenes_payload_by_its_own_saving(bench):
    rows = [{"scene": "big", "payload_bits": 900, "real_bits_with_scales": 90, "ans_bits": 100, "tiles": [0] * 8},
            {"scene": "small", "payload_bits": 100, "real_bits_with_scales": 50, "ans_bits": 100, "tiles": [0] * 8}]
    out = bench.binned_rate(rows, 0.5)
    # 900 · 0.9 + 100 · 0.5 = 860 of 1000 bits: 14 % saved by payload weight, 30 % pooled over the tiles
    assert out["bpd"] == pytest.approx(0.43)
    assert out["saving_payload_weighted"] == pytest.approx(0.14)
    assert out["saving_tiles_pooled"] == pytest.approx(0.30)
    unchanged = [{**r, "real_bits_with_scales": r["ans_bits"]} for r in rows]
    assert bench.binned_rate(unchanged, 0.5)["bpd"] == pytest.approx(0.5)


def test_a_glob_joins_one_points_scenes_from_several_runs_and_refuses_a_scene_twice(bench, tmp_path, capsys):
    import json

    def row(scene, point):
        return {"scene": scene, "point": point, "payload_bits": 1000, "real_bits_with_scales": 80,
                "ans_bits": 100, "tiles": [0]}

    joint = bench.bench_rows(REPORT, bench.JOINT)
    for point in sorted(joint):
        q = point.split("/")[-1]
        for part, scenes in (("a", ["Art"]), ("b", ["Pipes", "cones"])):
            rows = [row(s, point) for s in scenes]
            (tmp_path / f"p{q}_{part}.json").write_text(json.dumps({"bundle": "x/stereo-middlebury", "rows": rows}))
    out = tmp_path / "bd.json"
    assert bench.main(["--binning", str(tmp_path / "p{q}_*.json"), "--json", str(out)]) == 0
    points = json.loads(out.read_text())["points"]
    assert len(points) == len(joint) and all(len(p["source"]) == 2 for p in points)
    assert all(p["binned"]["saving_payload_weighted"] == pytest.approx(0.2) for p in points)
    first = sorted(joint)[0].split("/")[-1]
    (tmp_path / f"p{first}_c.json").write_text(json.dumps({"bundle": "x/stereo-middlebury",
                                                           "rows": [row("Art", sorted(joint)[0])]}))
    with pytest.raises(ValueError, match="measured twice"):
        bench.main(["--binning", str(tmp_path / "p{q}_*.json")])
