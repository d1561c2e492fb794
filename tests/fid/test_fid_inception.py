"""FID end to end on CPU: torch-fidelity's real InceptionV3 loaded from a local file made at
test time (random seeded weights: the figures mean nothing as quality, only as arithmetic),
real image crops, the low-rank Fréchet distance, and ``ndsc stereo-eval --inception-weights``.
Nothing is downloaded: torch's hub folder is pointed at an empty place and stays absent."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from training.image_metrics import INCEPTION_WEIGHTS_ENV, fid, frechet_distance, frechet_distance_from_features


@pytest.mark.parametrize("n1, n2, d", [(5, 7, 16), (40, 30, 4)])  # fewer samples than dims (Gram path), and more
def test_feature_distance_equals_the_sqrtm_form(n1, n2, d):
    rng = np.random.default_rng(1)
    f1 = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d))
    f2 = rng.normal(1.0, 2.0, size=(n2, d))
    stats = lambda f: (f.mean(0), np.cov(f, rowvar=False))
    assert frechet_distance_from_features(f1, f2) == pytest.approx(frechet_distance(*stats(f1), *stats(f2)), rel=1e-6)
    assert frechet_distance_from_features(f1, f1) == pytest.approx(0, abs=1e-9 * np.trace(np.cov(f1, rowvar=False)))
    with pytest.raises(ValueError, match="two samples"):
        frechet_distance_from_features(f1[:1], f2)


def test_fid_runs_the_real_inception_from_a_local_file(random_inception_weights, motorcycle_crops, tmp_path, monkeypatch):
    hub = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(hub))  # a download would create hub/hub/checkpoints
    crops = motorcycle_crops
    rng = np.random.default_rng(0)
    noised = [np.clip(c + rng.normal(0, 30, c.shape), 0, 255) for c in crops]

    same = fid(crops, crops, random_inception_weights)
    apart = fid(crops, noised, random_inception_weights)

    # Random weights: these numbers say nothing about image quality; they check the pipeline.
    assert np.isfinite(apart["fid"]) and apart["fid"] > 0
    assert abs(same["fid"]) <= 1e-6 * apart["fid"]
    assert same["weights"] == str(random_inception_weights) and same["images"] == 3
    assert "indicative only" in same["note"] and "InceptionV3" in same["note"]
    assert not hub.exists()
    bare = sys.modules.get("torch_fidelity")
    assert bare is None or hasattr(bare, "calculate_metrics")  # no bare package left behind


class _NotTensors:
    pass


def test_unusable_weights_get_a_clear_reason_and_nothing_is_downloaded(motorcycle_crops, tmp_path, monkeypatch):
    hub = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(hub))
    crops = motorcycle_crops
    none = fid(crops, crops, None)
    assert none["fid"] is None and INCEPTION_WEIGHTS_ENV in none["reason"] and "nothing is downloaded" in none["reason"]

    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    out = fid(crops, crops, wrong)
    assert out["fid"] is None and str(wrong) in out["reason"] and "not torch-fidelity InceptionV3 weights" in out["reason"]

    pickled = tmp_path / "pickled.pth"
    torch.save({"fc.weight": _NotTensors()}, pickled)  # a pickle that would run code: refused before loading
    out = fid(crops, crops, pickled)
    assert out["fid"] is None and str(pickled) in out["reason"]

    out = fid(crops[:1], crops[:1], wrong)
    assert out["fid"] is None and "at least two images" in out["reason"]
    assert not hub.exists()


def test_stereo_eval_cli_reports_fid_from_the_flag_and_the_env(random_inception_weights, motorcycle_crops, tmp_path,
                                                                monkeypatch, capsys):
    from app.cli import main
    from tests.stereo.conftest import scene_crop, write_rgb
    from ndsc.sources.images import skimage_pair

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    root, pair = tmp_path / "pairs", skimage_pair()
    for k, scene in enumerate(("s0", "s1", "s2")):
        crop = scene_crop(pair, k)
        write_rgb(root / scene / "left.png", crop[0])
        write_rgb(root / scene / "right.png", crop[1])
    bundle = tmp_path / "bundle"
    assert main(["stereo-train", "--root", str(root), "--out", str(bundle), "--preset", "stereo-quick", "--steps", "4"]) == 0
    capsys.readouterr()

    assert main(["stereo-eval", str(bundle), "--images", str(root / "s0"),
                 "--inception-weights", str(random_inception_weights)]) == 0
    out = capsys.readouterr().out
    assert f"over 2 images; Inception weights {random_inception_weights}" in out and "FID not computed" not in out

    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(random_inception_weights))
    assert main(["stereo-eval", str(bundle), "--images", str(root / "s0"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["fid"]
    assert result["weights"] == str(random_inception_weights) and np.isfinite(result["fid"]) and result["fid"] > 0
    assert not (tmp_path / "torch-home").exists()
