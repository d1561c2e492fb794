"""The learned Slepian–Wolf codec (``neural-sw``): trained networks, real ANS + syndrome bytes."""
import numpy as np
import pytest

from training.baselines import build_baseline
from training.study.measure import measure


@pytest.fixture(scope="module")
def fitted(gauss):
    b = build_baseline("neural-sw", lmbda=0.05, steps=120, batch=1024, fit_windows=4, margin=0.05,
                       min_extra_bits=32, iterations=50)
    info = b.fit(gauss)
    return b, info


def test_learned_sw_round_trips_and_rate_is_its_bytes(fitted, gauss):
    b, info = fitted
    payloads = b.compress(gauss.test)
    assert all(isinstance(p, bytes) and p for row in payloads for p in row)
    x_hat = b.decompress(payloads)
    assert x_hat.shape == gauss.test.shape and np.isfinite(x_hat).all()
    m = measure(b, gauss.test, "gaussian")
    assert m["rate_sum"] == pytest.approx(8 * sum(m["payload_bytes"]) / (len(gauss.test) * 512))
    # The joint decoder of the trained network reconstructs well below the source variance.
    assert m["mse"] < 0.1
    assert info["train_seconds"] > 0 and len(info["steps"]) == 2


def test_source_two_is_recovered_exactly_from_its_syndromes(fitted, gauss):
    """Belief propagation with the learned p(q2 | q1) finds source 2's exact symbols."""
    b, _ = fitted
    b.failures = 0
    x_hat = b.decompress(b.compress(gauss.test))
    assert b.failures == 0
    i1 = np.stack([b._symbols1(w[0, 0]) for w in gauss.test])
    j2 = np.stack([b._symbols2(w[1, 0]) for w in gauss.test])
    np.testing.assert_allclose(x_hat[:, 1, 0], b.mean2[i1, j2], rtol=0, atol=1e-12)


def test_source_two_costs_less_than_its_own_symbols_would(fitted, gauss):
    """Binning: source 2 sends fewer bits than the entropy of its symbols, which any one-to-one code needs."""
    b, _ = fitted
    m = measure(b, gauss.test, "gaussian")
    j2 = np.concatenate([b._symbols2(w[1, 0]) for w in gauss.test])
    p = np.bincount(j2) / len(j2)
    h_q2 = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    assert m["rate_per_source"][1] < h_q2 - 0.2
    a = b.analyse(gauss.test)
    assert a["learned_h_q2_given_q1_bits"] < h_q2
    assert any(p["mode"] in ("syndrome", "skip") for p in a["planes"])
    assert a["edge_onnx_ms_per_window"] > 0 and a["encoder_map"]["many_to_one"] == [False, True]


def test_learned_encoders_run_in_onnxruntime_with_identical_symbols(fitted, gauss, tmp_path):
    import onnxruntime as ort
    import torch

    from training.export import export_encoder_onnx

    b, _ = fitted
    x = np.ascontiguousarray(gauss.test[:2, 1], dtype=np.float32)  # (2, 1, 512): source 2's windows
    path = tmp_path / "enc.onnx"
    export_encoder_onnx(b.net.enc[1], tuple(x.shape[1:]), path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]
    with torch.no_grad():
        ref = b.net.enc[1](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-5)
    assert np.array_equal(np.clip(np.round(y[:, 0]).astype(np.int64), -b.half, b.half - 1) + b.half,
                          np.stack([b._symbols2(w[0]) for w in x]))


def test_learned_sw_refuses_other_data(ecg_synth):
    with pytest.raises(ValueError, match="two scalar"):
        build_baseline("neural-sw", lmbda=0.1, steps=1).fit(ecg_synth)
