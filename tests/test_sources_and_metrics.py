import numpy as np
import pytest

from ndsc import metrics
from ndsc.sources import SourceError, open_source
from ndsc.sources.synthetic import GaussianSources, SyntheticECG


def test_gaussian_sources_have_the_requested_correlation():
    gen = GaussianSources(n_sources=3, rho=0.9, samples=256)
    x = gen.windows_array(0, 200)  # (200, 3, 1, 256)
    flat = x.transpose(1, 0, 2, 3).reshape(3, -1)
    c = np.corrcoef(flat)
    assert np.allclose(c[np.triu_indices(3, 1)], 0.9, atol=0.01)
    assert np.allclose(flat.var(axis=1), 1.0, atol=0.02)


def test_explicit_correlation_matrix_is_used():
    corr = np.array([[1.0, 0.2], [0.2, 1.0]])
    x = GaussianSources(n_sources=2, corr=corr, samples=512).windows_array(0, 100)
    assert np.corrcoef(x[:, 0].ravel(), x[:, 1].ravel())[0, 1] == pytest.approx(0.2, abs=0.02)


def test_synthetic_ecg_obeys_einthoven_up_to_noise():
    gen = SyntheticECG(noise_mv=0.0)
    w = gen.window(3)  # (12, 1, T)
    lead_i, lead_ii, lead_iii = w[0, 0], w[1, 0], w[2, 0]
    wanderless = lead_iii - (lead_ii - lead_i)
    assert np.abs(wanderless).max() < 0.35  # only the independent baseline wander differs
    assert w.shape == (12, 1, 256)


def test_nodes_in_separate_processes_see_the_same_joint_window():
    a = open_source("gaussian:n=2,rho=0.9,seed=4,count=3", 0, (1, 64))
    b = open_source("gaussian:n=2,rho=0.9,seed=4,count=3", 1, (1, 64))
    wa, wb = list(a.windows()), list(b.windows())
    joint = GaussianSources(n_sources=2, rho=0.9, samples=64, seed=4).window(1)
    assert len(wa) == 3 and np.array_equal(wa[1].data, joint[0]) and np.array_equal(wb[1].data, joint[1])


def test_unknown_scheme_and_bad_arguments_are_clear_errors():
    with pytest.raises(SourceError, match="unknown source scheme"):
        open_source("nope:x", 0, (1, 64))
    with pytest.raises(SourceError, match="unknown gaussian arguments"):
        open_source("gaussian:bogus=1", 0, (1, 64))
    with pytest.raises(SourceError, match="out of range"):
        open_source("gaussian:n=2", 5, (1, 64))


def test_metrics_on_known_values():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = x + np.array([0.1, -0.1, 0.1, -0.1])
    assert metrics.mse(x, y) == pytest.approx(0.01)
    assert metrics.rmse(x, y) == pytest.approx(0.1)
    assert metrics.psnr(x, y, peak=1.0) == pytest.approx(20.0)
    assert metrics.prd(x, y) == pytest.approx(100 * 0.2 / np.sqrt(30))
    assert metrics.prdn(x, y) == pytest.approx(100 * 0.2 / np.sqrt(5))
    assert metrics.bits_per_sample(10, 40) == 2.0
