import json
import shutil

import pytest

from ndsc.bundle import BundleError, load_bundle


def test_bundle_manifest_describes_everything(gaussian_bundle):
    b = load_bundle(gaussian_bundle)
    assert b.bundle_id.startswith("sha256:")
    assert b.n_sources == 2 and b.modality == "gaussian"
    s = b.sources[0]
    assert s.input_shape == (1, 64) and s.latent_shape[0] == len(s.tables)
    assert (gaussian_bundle / s.encoder_file).is_file()
    assert b.training_config["lmbda"] > 0
    assert "test" in b.evaluation and "onnx_parity" in b.evaluation


def test_tampered_encoder_is_refused(gaussian_bundle, tmp_path):
    copy = shutil.copytree(gaussian_bundle, tmp_path / "b")
    with open(copy / "encoder_0.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="encoder_0.onnx was modified"):
        load_bundle(copy)


def test_tampered_manifest_is_refused(gaussian_bundle, tmp_path):
    copy = shutil.copytree(gaussian_bundle, tmp_path / "b")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["sources"][0]["tables"][0]["offset"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="modified after export"):
        load_bundle(copy)


def test_mismatched_bundle_id_is_refused(gaussian_bundle):
    with pytest.raises(BundleError, match="does not match expected"):
        load_bundle(gaussian_bundle, expected_id="sha256:" + "0" * 64)


def test_missing_bundle_gives_clear_error(tmp_path):
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path)
