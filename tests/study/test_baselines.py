"""Every registered baseline round-trips real bytes on tiny data in the study harness."""
import numpy as np
import pytest

from ndsc.bounds import all_bounds
from training.baselines import build_baseline, known_baselines
from training.baselines.ldpc import SyndromeCode
from training.baselines.neural import many_to_one
from training.study.measure import measure
from tests.study.conftest import TINY_TRAIN

GAUSSIAN = [
    ("sq", {"step": 0.5}), ("sq-separate", {"step": 0.5}), ("sq-modulo", {"step": 0.8, "modulo": 4}),
    ("lloyd-dsq", {"lmbda": 0.14, "step": 1.1, "step2": 0.9, "modulo": 3, "iterations": 2}),
    ("sq-syndrome", {"step": 0.7, "fit_windows": 2}),
    ("separate", {"lmbda": 0.05}), ("joint-b0", {"lmbda": 0.05}), ("neural", {"lmbda": 0.05, "beta_mi": 0.1}),
    ("dvqvae", {"symbols": 8, "steps": 5}), ("learned-binning", {"symbols": 8, "lmbda": 0.05, "steps": 5}),
]


def test_the_registry_names_every_required_baseline():
    names = set(known_baselines())
    assert {"separate", "joint-b0", "neural", "sq", "sq-separate", "sq-modulo", "sq-syndrome", "lloyd-dsq",
            "learned-binning", "dvqvae", "ndic-cam", "jpeg", "webp", "zstd", "flac", "dct-zstd"} <= names
    with pytest.raises(KeyError, match="unknown baseline"):
        build_baseline("no-such-codec")


@pytest.mark.parametrize("name,params", GAUSSIAN, ids=[n for n, _ in GAUSSIAN])
def test_gaussian_baselines_round_trip_real_bytes(gauss, name, params):
    b = build_baseline(name, train=TINY_TRAIN, **params)
    b.fit(gauss)
    payloads = b.compress(gauss.test)
    assert len(payloads) == len(gauss.test) and all(len(row) == 2 for row in payloads)
    assert all(isinstance(p, bytes) and len(p) > 0 for row in payloads for p in row)
    x_hat = b.decompress(payloads)
    assert x_hat.shape == gauss.test.shape and np.isfinite(x_hat).all()
    # Decoding is a function of the bytes alone.
    assert np.array_equal(x_hat, b.decompress(payloads))
    m = measure(b, gauss.test, "gaussian")
    assert m["rate_sum"] == pytest.approx(8 * sum(m["payload_bytes"]) / (len(gauss.test) * 512))


def test_scalar_quantiser_decodes_the_symbols_it_sent(gauss):
    b = build_baseline("sq", step=0.5)
    b.fit(gauss)
    payloads = b.compress(gauss.test)
    s = b.symbols(gauss.test)
    for w, row in enumerate(payloads):
        for i in range(2):
            assert np.array_equal(b.coders[i].decode(row[i], 512)[0], s[w, i])
    # One payload per window costs a few bytes over the ideal code length (the flushed ANS state).
    assert 0 < b.ans_overhead(gauss.test) < 8
    # The joint MMSE decoder beats separate decoding of the same symbols.
    sep = build_baseline("sq-separate", step=0.5)
    sep.fit(gauss)
    assert measure(b, gauss.test, "gaussian")["mse"] < measure(sep, gauss.test, "gaussian")["mse"]


def test_modulo_binning_is_many_to_one_and_saves_bits_of_source_two(gauss):
    plain, binned = build_baseline("sq", step=0.8), build_baseline("sq-modulo", step=0.8, modulo=4)
    plain.fit(gauss)
    binned.fit(gauss)
    assert binned.analyse(gauss.test)["encoder_map"]["many_to_one"] == [False, True]
    rp, rb = measure(plain, gauss.test, "gaussian"), measure(binned, gauss.test, "gaussian")
    assert rb["rate_per_source"][1] <= 2.02 < rp["rate_per_source"][1] - 0.3  # log2(4) bits plus ANS overhead
    assert rb["rate_per_source"][0] == rp["rate_per_source"][0]


def test_ldpc_syndrome_decoding_recovers_bits_from_good_side_information():
    rng = np.random.default_rng(1)
    n = 1024
    bits = rng.integers(0, 2, n).astype(np.uint8)
    flips = rng.random(n) < 0.03  # side information wrong on 3 % of bits: H ≈ 0.19 bit
    side = bits ^ flips
    llr = np.where(side == 0, 1.0, -1.0) * np.log(0.97 / 0.03)
    code = SyndromeCode(n, 400, seed=0)
    decoded, ok = code.decode(llr, code.syndrome(bits))
    assert ok and np.array_equal(decoded, bits)
    # Far too short a syndrome cannot pin the bits down, and the decoder says so (rather than
    # returning wrong bits as if they were right): its answer misses the syndrome it was given.
    short = SyndromeCode(n, 20, seed=0)
    decoded, ok = short.decode(llr, short.syndrome(bits))
    assert not ok
    assert not np.array_equal(short.syndrome(decoded), short.syndrome(bits))
    assert not np.array_equal(decoded, bits)


def test_syndrome_binning_codes_source_two_below_its_scalar_entropy(gauss):
    plain, syn = build_baseline("sq", step=0.7), build_baseline("sq-syndrome", step=0.7, fit_windows=2)
    plain.fit(gauss)
    syn.fit(gauss)
    rp, rs = measure(plain, gauss.test, "gaussian"), measure(syn, gauss.test, "gaussian")
    # 512-sample windows: each syndrome carries at least 64 spare bits (0.125 bit/sample), hence only ~0.6 saved.
    assert rs["rate_per_source"][1] < rp["rate_per_source"][1] - 0.5
    assert syn.failures == 0 and rs["mse"] < 1.2 * rp["mse"]
    assert rs["rate_sum"] < rp["rate_sum"]


def test_syndrome_lengths_are_the_shortest_that_decode_every_fit_window(gauss):
    """Calibration: each syndrome plane decodes all fit windows at its length minus the spare bits."""
    syn = build_baseline("sq-syndrome", step=1.25, step2=1.5, fit_windows=4, margin=0.0, min_extra_bits=0)
    syn.fit(gauss)
    planes = [p for p in syn.plan if p["mode"] == "syndrome"]
    assert planes and all(p["bits"] < 512 for p in planes)
    from training.baselines.ldpc import SyndromeCode

    for p in planes:
        k = p["plane"]
        code = SyndromeCode(512, p["bits"], seed=k, profile=p["profile"])
        for w in gauss.train[:4]:
            i1, j2 = syn._index(w[0, 0], syn.step1, syn.half1), syn._index(w[1, 0], syn.step, syn.half)
            assert code.decode(syn._llr(i1, j2 & ((1 << k) - 1), k), code.syndrome(syn._bit(j2, k)), syn.iterations)[1]


def test_many_to_one_detects_revisited_symbols():
    assert many_to_one(np.repeat([0, 1, 2], 10)) is False
    assert many_to_one(np.repeat([0, 1, 2, 0, 1, 2], 10)) is True
    # A one-point wobble at a decision boundary is not binning.
    assert many_to_one(np.r_[np.zeros(10), 1, np.zeros(3), np.ones(10)]) is False


def test_bounds_used_for_targets_match_design_figures():
    b = all_bounds(0.9, 0.1)
    assert (round(b["no_binning"], 2), round(b["berger_tung"], 2)) == (2.93, 2.25)


@pytest.mark.parametrize("name,params", [("zstd", {}), ("flac", {}), ("dct-zstd", {"step": 0.02})])
def test_ecg_conventional_codecs_round_trip(ecg_synth, name, params):
    b = build_baseline(name, **params)
    b.fit(ecg_synth)
    m = measure(b, ecg_synth.test, "ecg")
    if name in ("zstd", "flac"):  # lossless at 1 µV per step
        x_hat = b.decompress(b.compress(ecg_synth.test))
        assert np.abs(x_hat - ecg_synth.test).max() <= 0.0005 + 1e-6
        assert m["rmse_uv"] < 0.5
    else:
        assert 0 < m["prdn_percent"] < 20
    assert 0 < m["rate_mean"] < 16


def test_dct_codec_trades_rate_for_distortion(ecg_synth):
    coarse, fine = build_baseline("dct-zstd", step=0.05), build_baseline("dct-zstd", step=0.005)
    coarse.fit(ecg_synth)
    fine.fit(ecg_synth)
    mc, mf = measure(coarse, ecg_synth.test, "ecg"), measure(fine, ecg_synth.test, "ecg")
    assert mc["rate_mean"] < mf["rate_mean"] and mc["prdn_percent"] > mf["prdn_percent"]


def test_ecg_neural_codec_with_conv_encoders(ecg_synth):
    train = {"model": {"encoder": "conv1d", "decoder": "conv1d", "latent_channels": 2, "hidden": 8, "stride": 4,
                       "input_scale": 0.5}, "steps": 3, "batch_size": 4, "progress": False, "mi_pairs": "windows"}
    b = build_baseline("joint-b0", train=train, lmbda=0.002)
    b.fit(ecg_synth)
    m = measure(b, ecg_synth.test, "ecg")
    assert m["rate_mean"] > 0 and np.isfinite(m["prdn_percent"])


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_image_codecs_code_each_view_with_their_own_bytes(tiny_stereo, name):
    lo, hi = build_baseline(name, quality=10), build_baseline(name, quality=90)
    lo.fit(tiny_stereo)
    hi.fit(tiny_stereo)
    ml, mh = measure(lo, tiny_stereo.test, "stereo"), measure(hi, tiny_stereo.test, "stereo")
    assert ml["rate_mean"] < mh["rate_mean"] and ml["psnr_db"] < mh["psnr_db"]
    assert 0 < mh["ms_ssim"] <= 1


def test_cross_attention_decoder_codes_stereo(tiny_stereo):
    train = {"model": {"encoder": "conv2d-gdn", "decoder": "stereo-attention", "latent_channels": 4, "hidden": 8,
                       "stride": 16, "input_scale": 255.0}, "steps": 2, "batch_size": 2, "progress": False,
             "optimisation": "joint"}
    b = build_baseline("ndic-cam", train=train, lmbda=100.0)
    assert b.cfg.model.decoder == "cross-attention-cam"
    b.fit(tiny_stereo)
    m = measure(b, tiny_stereo.test, "stereo")
    assert m["rate_mean"] > 0 and np.isfinite(m["psnr_db"])
