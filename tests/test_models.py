"""The shared models package: serving builds every decoder a bundle can name, without training."""
from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from models.config import ModelConfig
from models.decoders import DECODERS, build_decoder, decoder_args, known_decoders

def test_serving_knows_every_decoder_without_importing_training():
    code = ("import sys, fusion_decoder.runtime; from models.decoders import known_decoders; "
            "print(','.join(known_decoders())); "
            "print(','.join(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] == 'training'})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "cross-attention-cam" in out[0].split(",") and "stereo-attention" in out[0].split(",")
    assert out[1] == "", "serving imported training"


@pytest.mark.parametrize("arch", known_decoders(from_model_config=True))
def test_every_decoder_takes_the_arguments_it_declares(arch):
    model = ModelConfig(decoder=arch, latent_channels=16, stride=16)
    args = decoder_args(arch, model, n_sources=2, out_channels=1)
    inspect.signature(DECODERS.get(arch)).bind(**args)  # raises TypeError on an argument it does not take
    declared = getattr(DECODERS.get(arch), "config_args", {})
    assert {k: args[k] for k in declared} == {k: getattr(model, f) for k, f in declared.items()}


def test_a_decoder_gets_only_the_settings_it_declares():
    model = ModelConfig(decoder="stereo-attention", stride=8, layers=5)
    args = decoder_args("stereo-attention", model, n_sources=2, out_channels=3)
    assert "upsample" not in args and "layers" not in args  # keeps its own stride-16 default
    assert decoder_args("pointwise", model, 2, 1)["layers"] == 5
    assert decoder_args("conv1d", model, 2, 1)["upsample"] == 8


def test_a_fitted_decoder_is_not_built_from_a_model_config():
    assert "table2" in known_decoders() and "table2" not in known_decoders(from_model_config=True)
    with pytest.raises(ValueError, match="fitted"):
        decoder_args("table2", ModelConfig(), 2, 1)


def test_an_unknown_decoder_is_named_with_the_known_ones():
    with pytest.raises(KeyError, match="known: .*pointwise"):
        build_decoder("no-such-decoder", {})


def test_a_registry_imports_its_modality_modules_before_the_first_lookup():
    from ndsc.registry import Registry

    reg: Registry[object] = Registry("thing", "ndsc.sources.no_such_modality", "json")
    assert "x" not in reg  # the absent module is skipped, json imported
    reg.add("x", 1)
    assert reg.get("x") == 1 and reg.names() == ["x"]
    with pytest.raises(KeyError, match="unknown thing 'y'; known: x"):
        reg.get("y")
    reg.remove("x")
    assert reg.names() == []


def test_every_test_module_has_one_tier_and_the_named_ones_exist():
    from tests.conftest import REPO, TIERS, tier_of

    named = [REPO / "tests" / m for modules in TIERS.values() for m in modules]
    assert all(p.is_file() for p in named), [str(p) for p in named if not p.is_file()]
    assert len(named) == len(set(named))
    assert tier_of(REPO / "tests" / "deploy" / "test_k8s.py") == "deploy"
    assert tier_of(REPO / "tests" / "test_entropy.py") == "unit"


def test_the_codec_and_the_serving_runtime_decode_the_same_bytes_alike(tmp_path):
    """One decode path: DistributedCodec.decompress (training, the study) and the decoder's runtime
    take the same steps, so the same payloads give the same reconstructions at every quality point."""
    import numpy as np
    import torch

    from fusion_decoder.runtime import JointDecoderRuntime
    from ndsc.bundle import load_bundle
    from tests.conftest import tiny_gaussian_config
    from training.export import export_bundle
    from training.train import train

    result = train(tiny_gaussian_config(steps=20, model={"quality_lambdas": [0.005, 0.05]}))
    model = result.model.eval()
    model.update()
    runtime = JointDecoderRuntime(load_bundle(export_bundle(model, result.dataset, tmp_path / "b")), device="cpu")
    x = torch.from_numpy(np.ascontiguousarray(result.dataset.test[:6], dtype=np.float32))
    for quality in model.quality_names:
        payloads = model.compress(x, quality)
        offline = model.decompress(payloads, model.latent_shape(), quality).numpy()
        served, present = runtime.decode_batch(payloads, qualities=[[quality] * model.n_sources] * len(payloads))
        assert present.all()
        np.testing.assert_allclose(served, offline, rtol=0, atol=1e-5)
