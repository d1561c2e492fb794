import numpy as np
import pytest

from training.baselines_image import at_matched_rate, encode, point
from training.image_metrics import bpd, bpp, fid, frechet_distance, ms_ssim, psnr
from training.study.bdrate import bd_psnr


def test_rates_come_from_bytes():
    assert bpp(1000, 100, 80) == 1.0
    assert bpd(1000, 100, 80, 3) == pytest.approx(1 / 3)


def test_psnr_and_ms_ssim_on_known_images(motorcycle):
    x = motorcycle[0, :, :200, :200]
    assert psnr(x, x + 1.0) == pytest.approx(10 * np.log10(255 ** 2), abs=1e-9)
    assert ms_ssim(x, x) == (pytest.approx(1.0), 11)
    noisy = x + np.random.default_rng(0).normal(0, 20, x.shape)
    value, _ = ms_ssim(x, noisy)
    assert 0 < value < 0.99
    assert ms_ssim(x[:, :64, :64], x[:, :64, :64])[1] == 3  # small images get a smaller window


def test_numpy_ms_ssim_of_the_core_agrees_with_pytorch_msssim(motorcycle):
    from ndsc.metrics import ms_ssim as numpy_ms_ssim

    noisy = np.clip(motorcycle[0] + np.random.default_rng(0).normal(0, 12, motorcycle[0].shape), 0, 255)
    odd = (slice(None), slice(0, 301), slice(0, 333))  # odd sides: the zero-padded pooling
    for a, b in ((motorcycle[0], noisy), (motorcycle[0][odd], motorcycle[1][odd])):
        assert numpy_ms_ssim(a, b) == pytest.approx(ms_ssim(a, b)[0], abs=1e-5)
    assert numpy_ms_ssim(motorcycle[0], motorcycle[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shorter side"):
        numpy_ms_ssim(motorcycle[0][:, :150], motorcycle[0][:, :150])


def test_frechet_distance_matches_closed_forms():
    # 1-D: (μ1 − μ2)² + (σ1 − σ2)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(4 + 1)
    # commuting (diagonal) covariances: ‖Δμ‖² + Σ (√a − √b)²
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
    assert frechet_distance(mu1, a, mu2, b) == pytest.approx(9 + 1 + 0 + 4)
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 5))
    cov = m @ m.T + np.eye(5)
    assert frechet_distance(mu1[:1].repeat(5), cov, mu1[:1].repeat(5), cov) == pytest.approx(0, abs=1e-6)


def test_fid_says_clearly_why_it_is_absent(tmp_path, motorcycle):
    assert "no Inception weights path" in fid([motorcycle[0]], [motorcycle[0]], None)["reason"]
    missing = tmp_path / "pt_inception.pth"
    out = fid([motorcycle[0]], [motorcycle[0]], missing)
    assert out["fid"] is None and str(missing) in out["reason"]


def test_bd_psnr_of_a_curve_one_db_better_at_every_rate():
    rates, quality = np.array([0.1, 0.2, 0.4, 0.8]), np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_psnr(rates, quality, rates, quality + 1.0) == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(rates, quality, 2 * rates, quality) == pytest.approx(-3.0, abs=1e-6)  # 3 dB per doubling
    assert np.isnan(bd_psnr(rates, quality, 10 * rates, quality))  # no common rate range


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_matched_rate_baseline_stays_within_the_byte_budget(codec, motorcycle):
    image = np.ascontiguousarray(motorcycle[1, :, :160, :224])
    low, high = at_matched_rate(image, codec, 2000), at_matched_rate(image, codec, 6000)
    assert low.nbytes <= 2000 and high.nbytes <= 6000
    assert low.quality < high.quality
    assert psnr(image, low.reconstruction) < psnr(image, high.reconstruction)
    figures = point(image, high)
    assert figures["bpp"] == 8 * high.nbytes / (160 * 224) and figures["codec"] == codec
    assert encode(image, codec, high.quality).nbytes == high.nbytes  # deterministic
