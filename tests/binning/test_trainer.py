"""The main trainer (`ndsc train`) learns the conditional table and exports a servable syndrome bundle."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ndsc.bundle import load_bundle
from tests.conftest import reconstruction_atol


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """gaussian-quick, source 1 syndrome-coded with source 0 as side; a short CPU run (seconds)."""
    from training.pipeline import train_and_export
    from training.presets import get_preset

    cfg = get_preset("gaussian-quick").replace(
        steps=150, progress=False, threads=1, binning={"syndrome": [[1, 0]]},
        data={"n_windows": 100, "params": {"n": 2, "rho": 0.9, "samples": 512}})
    return train_and_export(cfg, tmp_path_factory.mktemp("trained") / "syndrome")


def _direct_and_served(path: Path):
    """Per test window the edge's symbols of both sources, and the joint decoder's output from them."""
    from edge_encoder.encoder import EdgeEncoder
    from fusion_decoder.runtime import JointDecoderRuntime
    from training.evaluate import dataset_for_bundle

    bundle = load_bundle(path)
    windows = dataset_for_bundle(bundle).test
    encoders = [EdgeEncoder(bundle, i) for i in range(2)]
    symbols = [[encoders[i].symbols(x[i]) for i in range(2)] for x in windows]
    x_hat, _ = JointDecoderRuntime(bundle, "cpu").decode_batch(symbols)
    return bundle, windows, symbols, x_hat


def test_trained_bundle_declares_the_syndrome_source_and_its_side(trained):
    from models.config import TrainConfig

    path, report = trained
    bundle = load_bundle(path)
    assert bundle.bundle_id == report["bundle_id"]
    assert [s.coding for s in bundle.sources] == ["direct", "syndrome"] and bundle.decode_order == [0, 1]
    spec = bundle.sources[1].binning
    assert spec.side_sources == (0,) and spec.n == 512 and len(spec.checks) == spec.n
    assert TrainConfig.from_dict(bundle.training_config).binning.syndrome == [[1, 0]]
    assert {p.mode for p in spec.planes} <= {"raw", "syndrome"} and any(p.mode == "syndrome" for p in spec.planes)
    assert all(p.initial_bits >= 32 for p in spec.planes if p.mode == "syndrome")


def test_the_decoder_uses_the_table_learned_from_training_symbols(trained):
    from edge_encoder.encoder import EdgeEncoder
    from fusion_decoder.belief import SyndromeDecoder
    from training.evaluate import dataset_for_bundle
    from training.syndrome_export import fit_conditional, training_symbols

    path, report = trained
    bundle = load_bundle(path)
    train = dataset_for_bundle(bundle).train
    fit = fit_conditional(training_symbols(EdgeEncoder(bundle, 0), train[:, 0]),
                          training_symbols(EdgeEncoder(bundle, 1), train[:, 1]), smoothing=1.0)
    info = bundle.sources[1]
    dec = SyndromeDecoder(info.binning, info.coder(), info.latent_shape)
    np.testing.assert_allclose(dec.cond, fit["cond"], rtol=1e-12)
    assert dec.side_offset == fit["side_offset"] and info.binning.offset == fit["offset"]
    learned = report["binning"]["sources"]["1"]
    # correlated sources: the side symbol tells the table a good part of the index
    assert learned["h_given_side_bits_per_symbol"] < 0.8 * learned["h_bits_per_symbol"]


def test_offline_decoding_returns_the_edge_symbols_with_fewer_bits_than_direct(trained):
    from training.binning import measure_offline

    path, report = trained
    bundle, windows, _, x_hat = _direct_and_served(path)
    served = measure_offline(bundle, windows)
    # every syndrome-coded window decoded to exactly the edge's symbols: the same reconstruction (to float
    # noise of batching; one wrong symbol moves a sample by a quantiser step, ~0.1 here)
    np.testing.assert_allclose(served["x_hat"], x_hat, rtol=0, atol=reconstruction_atol(1e-5))
    direct_bits = next(s for s in report["sources"] if s["name"] == bundle.sources[1].name)["bits_per_sample"]
    assert served["bits_per_source"][1] < direct_bits
    assert report["binning"]["sum_rate_bits_per_pair"] == pytest.approx(served["sum_rate_bits_per_pair"], abs=1e-6)


def test_trained_bundle_served_live_equals_offline(trained):
    from tests.binning.test_live import _check_live_equals_offline, _stream

    path, _ = trained
    counts, items, registry, nodes = _stream(path)
    _check_live_equals_offline(path, counts, items, registry, nodes)
    assert nodes[1].syndrome.settled


@pytest.fixture(scope="module")
def short_blocks(tmp_path_factory) -> Path:
    """The configuration where BP's first "success" is often a wrong word: 256-sample windows (= the LDPC
    block) and syndrome planes starting with as few bits as n·H asks (no ``min_initial_bits`` floor)."""
    from training.pipeline import train_and_export
    from training.presets import get_preset

    cfg = get_preset("gaussian-quick").replace(
        steps=150, progress=False, threads=1, binning={"syndrome": [[1, 0]], "min_initial_bits": 1},
        data={"n_windows": 100, "params": {"n": 2, "rho": 0.9, "samples": 256}})
    return train_and_export(cfg, tmp_path_factory.mktemp("trained") / "short")[0]


def test_short_blocks_decode_to_the_edge_symbols_only_with_the_plane_check(short_blocks):
    """Without the check (bundles before it: ``check_bits`` 0) some test windows decode to wrong symbols,
    silently; with the trainer's default check every window decodes to the edge's symbols, the wrong words
    caught and more bits asked for, and the check's bits are in the rate."""
    from dataclasses import replace

    from ndsc.binning import DEFAULT_CHECK_BITS
    from training.binning import measure_offline
    from training.evaluate import dataset_for_bundle

    bundle = load_bundle(short_blocks)
    info = bundle.sources[1]
    assert info.binning.check_bits == DEFAULT_CHECK_BITS
    unchecked = replace(bundle, sources=[bundle.sources[0], replace(info, binning=replace(info.binning, check_bits=0))])
    windows = dataset_for_bundle(bundle).test
    before, after = measure_offline(unchecked, windows), measure_offline(bundle, windows)
    assert before["wrong_windows"] >= 1 and before["check_failures"] == 0
    assert after["wrong_windows"] == 0 and all(r["wrong_symbols"] == [0, 0] for r in after["windows"])
    assert after["check_failures"] >= before["wrong_windows"]
    # every payload carries the check's bits per syndrome plane, counted in each window's bits
    syndrome_planes = sum(p.mode == "syndrome" for p in info.binning.planes)
    assert info.binning.initial_bits == unchecked.sources[1].binning.initial_bits + DEFAULT_CHECK_BITS * syndrome_planes
    assert all(r["bits"][1] >= 8 * info.binning.payload_bytes for r in after["windows"])


def test_short_blocks_served_live_equal_offline_with_the_caught_words_counted(short_blocks):
    from tests.binning.test_live import _check_live_equals_offline, _stream
    from tests.serving.conftest import labels

    counts, items, registry, nodes = _stream(short_blocks)
    offline = _check_live_equals_offline(short_blocks, counts, items, registry, nodes)
    caught = registry.get_sample_value("ndsc_syndrome_check_failures_total", labels(source=1))
    assert caught == offline["check_failures"] > 0 and offline["wrong_windows"] == 0


@pytest.mark.parametrize("changes", [
    {"binning": {"syndrome": [[1, 1]]}},  # its own side
    {"binning": {"syndrome": [[1, 0], [0, 1]]}},  # a side source that is itself syndrome-coded
    {"binning": {"syndrome": [[1, 0]]}, "model": {"quality_lambdas": [0.1, 0.01]}},  # variable rate
    {"binning": {"syndrome": [[1, 0]], "check_bits": 12}},  # no such plane check
])
def test_a_binning_config_that_cannot_become_a_bundle_fails_before_training(changes, tmp_path):
    from tests.conftest import tiny_gaussian_config
    from training.pipeline import train_and_export

    with pytest.raises(ValueError, match="binning"):
        train_and_export(tiny_gaussian_config(**changes), tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
