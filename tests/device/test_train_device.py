"""Training on a device: ``auto`` picks CUDA only when present, ``cuda`` without CUDA falls back to the
CPU with a warning, the model always leaves ``train`` on the CPU, and the device is recorded.

CI has no GPU, so the CUDA path itself cannot run here: these tests pin the resolution rules, the
fallback (CUDA made absent with ``monkeypatch`` so they mean the same on a GPU box), CPU results
bit-identical whatever the device was named, and everything downstream of training (real bytes
through compress/decompress, export, evaluation, the study runner) on the returned model.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from models.config import DataConfig, ModelConfig, TrainConfig
from models.device import resolve_device
from training.train import load_checkpoint, save_checkpoint, train

FALLBACK = "CUDA is not available: training on cpu"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA (CI's case), also when the tests run on a GPU box."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def tiny_cfg(**changes) -> TrainConfig:
    cfg = TrainConfig(data=DataConfig(kind="gaussian", n_windows=40, params={"n": 3, "rho": 0.9, "samples": 32}),
                      model=ModelConfig(hidden=8, layers=1), steps=12, batch_size=8, beta_mi=0.1,
                      source_dropout=0.3, optimisation="joint", progress=False)
    return cfg.replace(**changes)


def test_auto_is_cuda_only_when_cuda_is_available(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")


def test_cuda_without_cuda_falls_back_to_cpu_with_a_warning(no_cuda, caplog):
    with caplog.at_level(logging.WARNING, logger="ndsc.device"):
        assert resolve_device("cuda") == torch.device("cpu")
        assert resolve_device("cuda:1") == torch.device("cpu")
    assert [r.getMessage() for r in caplog.records] == [
        f"device cuda requested but {FALLBACK}", f"device cuda:1 requested but {FALLBACK}"]


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "meta"])
def test_unknown_devices_are_refused_by_name(name):
    with pytest.raises(ValueError, match=repr(name)):
        resolve_device(name)


def test_cuda_fallback_trains_on_cpu_bit_identically_and_codes_real_bytes(no_cuda, caplog):
    with caplog.at_level(logging.WARNING, logger="ndsc.device"):
        fell_back = train(tiny_cfg(device="cuda"))
    assert any(FALLBACK in r.getMessage() for r in caplog.records)
    reference = train(tiny_cfg(device="cpu"))
    assert fell_back.device == reference.device == "cpu"
    assert fell_back.config.device == "cuda"  # the request is kept; the result says where it ran
    # same seed, same CPU: the same run whatever the device was called
    a, b = reference.model.state_dict(), fell_back.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fell_back.history == reference.history and len(fell_back.history) == 12
    model = fell_back.model
    assert {p.device.type for p in [*model.parameters(), *fell_back.mi.parameters()]} == {"cpu"}
    model.update()
    x = torch.from_numpy(fell_back.dataset.test[:4])
    payloads = model.compress(x)
    assert len(payloads) == 4 and all(isinstance(p, bytes) and p for row in payloads for p in row)
    x_hat = model.decompress(payloads, model.latent_shape())
    with torch.no_grad():  # the coder is lossless on the symbols: decoding them equals synthesis of round(y)
        expected = model.synthesis(torch.round(model.analysis(x)))
    assert torch.equal(x_hat, expected)


def test_config_round_trips_and_old_configs_without_device_still_load(tmp_path):
    cfg = tiny_cfg(device="cuda:1")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = cfg.to_dict()
    del old["device"]  # a checkpoint or manifest written before the field existed
    assert TrainConfig.from_dict(old).device == "auto"
    from ndsc.bundles import default_bundle
    from ndsc.bundle import load_bundle

    shipped = load_bundle(default_bundle())
    assert TrainConfig.from_dict(shipped.training_config).device in ("auto", "cpu")
    assert TrainConfig.from_dict(shipped.training_config).device == "auto"
    # a checkpoint whose config predates the field
    result = train(tiny_cfg(steps=2, device="cpu"))
    path = tmp_path / "old.pt"
    save_checkpoint(result, path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["device"] == "cpu"
    del ckpt["config"]["device"], ckpt["device"]
    torch.save(ckpt, path)
    model = load_checkpoint(path)
    sa, sb = model.state_dict(), result.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert model.cfg.device == "auto"


def test_ndsc_train_device_flag_exports_and_records_where_it_trained(no_cuda, tmp_path, capsys):
    from ndsc.bundle import load_bundle
    from app.cli import main

    cfg = tiny_cfg(steps=8, data={"n_windows": 60, "params": {"n": 2, "rho": 0.9, "samples": 32}})
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "bundle"
    assert main(["train", "--config", str(tmp_path / "cfg.json"), "--device", "cuda", "--out", str(out)]) == 0
    assert "trained on cpu in " in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle.training_config["device"] == "cuda"  # what was asked
    assert bundle.evaluation["test"]["train_device"] == "cpu"  # where it ran
    assert bundle.evaluation["test"]["payload_bytes"] > 0


@pytest.mark.parametrize("flags", [["ecg-train", "--records", "r", "--out", "o"],
                                   ["stereo-train", "--root", "r", "--out", "o"],
                                   ["study", "--config", "c"]])
def test_every_training_command_takes_a_device(flags):
    from app.cli import build_parser

    assert build_parser().parse_args([*flags, "--device", "cuda:0"]).device == "cuda:0"


def test_study_device_reaches_the_networks_and_is_not_part_of_the_cache_key(no_cuda, tmp_path):
    from training.study.config import StudyConfig
    from training.study.runner import execute, expand

    raw = {"name": "device", "cache": str(tmp_path), "datasets": [{
        "name": "g", "data": {"kind": "gaussian", "n_windows": 20, "params": {"rho": 0.9, "samples": 64}},
        "train": {"model": {"hidden": 8, "layers": 1}, "steps": 4, "batch_size": 2, "progress": False},
        "methods": [{"label": "joint", "baseline": "joint-b0", "params": {"lmbda": 0.1}},
                    {"label": "dvqvae", "baseline": "dvqvae", "params": {"symbols": 4, "dim": 2, "steps": 4}},
                    {"label": "sq", "baseline": "sq", "params": {"step": 0.5}}]}]}
    runs = expand(StudyConfig.from_dict({**raw, "device": "cuda"}))
    assert [r.device for r in runs] == ["cuda"] * 3
    assert [r.key() for r in runs] == [r.key() for r in expand(StudyConfig.from_dict({**raw, "device": "cpu"}))]
    joint, vq, sq = (execute(r) for r in runs)
    assert joint["fit"]["device"] == vq["fit"]["device"] == "cpu"  # cuda asked, none here: trained on the CPU
    assert "device" not in sq["fit"]  # nothing trained
    for result in (joint, vq):
        assert result["metrics"]["rate_sum"] > 0 and np.isfinite(result["metrics"]["mse"])


def test_shipped_study_configs_name_their_device():
    from training.study.config import StudyConfig

    assert StudyConfig.load(REPO / "configs/study-small.yaml").device == "cpu"
    assert StudyConfig.load(REPO / "configs/study-full.yaml").device == "auto"
