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


@pytest.mark.parametrize("arch", known_decoders())
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
