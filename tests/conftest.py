"""Shared fixtures: tiny real bundles trained once per test session."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

#: The tier of each test module, the heaviest thing its tests do (markers registered in pyproject.toml):
#: ``unit`` in-process logic (every module not named here), ``loopback`` real gRPC/HTTP on 127.0.0.1
#: inside the test process, ``process`` child processes, ``deploy`` everything under tests/deploy/.
#: ``pytest -m unit`` is the quick run; ``-m "not deploy"`` leaves the image and compose checks out.
TIERS = {
    "loopback": (
        "device/test_shared_clock_pacing.py", "reliability/test_auth_tls.py", "reliability/test_bad_input.py",
        "reliability/test_bounded_metrics.py", "reliability/test_dropout_and_slow_consumer.py",
        "reliability/test_hostile_clients.py", "serving/test_ack_pacing.py", "serving/test_generic_client.py", "serving/test_inprocess.py",
        "serving/test_logic.py", "serving/test_off_the_loop.py", "stereo/test_serving.py",
        "stereo/test_whole_frames.py", "binning/test_live.py",
    ),
    "process": (
        "ecg/test_live_edge.py", "ecg/test_quality_points.py", "ecg/test_stream.py", "reliability/test_fuzz.py",
        "reliability/test_ports_and_signals.py", "reliability/test_restart.py", "serving/test_demo.py",
        "serving/test_processes.py", "serving/test_wire.py", "stereo/test_readers_and_sources.py",
        "test_cli_mistakes.py", "test_dev_script.py", "test_edge_never_imports_torch.py",
        "test_generated_docs.py", "test_models.py", "test_static_checks.py", "test_truthful_messages.py",
        "binning/test_processes.py",
    ),
}


def reconstruction_atol(cpu_atol: float) -> float:
    """How far a live decoder's reconstruction may be from the CPU's offline one.

    The live decoder runs on CUDA where a GPU is present (its default device); cuDNN's kernels (TF32
    convolutions) round differently from the CPU's, by ~1e-4 on unit-variance signals, while the decoded
    symbols and payload bytes stay identical. On a CPU-only machine the figure is the CPU's own.
    """
    import torch

    return max(cpu_atol, 1e-3) if torch.cuda.is_available() else cpu_atol


def assert_images_match_offline(live, offline, peak: float = 255.0) -> None:
    """A live decoder's stereo reconstruction equals the CPU's offline one (within 1e-3 on CPU).

    On CUDA the stereo decoder's block matching picks, per pixel, the disparity of least cost; cuDNN's
    rounding (~1e-5 relative, full fp32) flips a few near-ties, which moves those pixels by up to a few
    levels (measured on an H200: 2.4 % of the scikit-image pair's values, by at most 1.9 of 255). There
    the two must agree to ≥ 50 dB PSNR (≈ 0.8 levels RMS) with no value further apart than 5 % of
    ``peak``: a wrong window, a wrong quality or a dropped source misses that by tens of dB.
    """
    import numpy as np
    import torch

    live, offline = np.asarray(live, dtype=np.float64), np.asarray(offline, dtype=np.float64)
    assert live.shape == offline.shape
    if not torch.cuda.is_available():
        np.testing.assert_allclose(live, offline, rtol=0, atol=1e-3)
        return
    mse = float(np.mean((live - offline) ** 2))
    assert mse == 0 or 10 * np.log10(peak ** 2 / mse) >= 50.0, f"live vs offline MSE {mse:.4g}"
    assert float(np.max(np.abs(live - offline))) <= 0.05 * peak


def tier_of(module: Path) -> str:
    """The tier of a test module (a path under tests/)."""
    rel = module.resolve().relative_to(REPO / "tests").as_posix()
    if rel.startswith("deploy/"):
        return "deploy"
    return next((tier for tier, modules in TIERS.items() if rel in modules), "unit")


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(tier_of(Path(item.path)))


def tiny_gaussian_config(**changes):
    from training.presets import get_preset

    cfg = get_preset("gaussian-quick").replace(**{"steps": 150, "progress": False, **changes})
    cfg.data.n_windows = 300
    return cfg


@pytest.fixture(scope="session")
def gaussian_bundle(tmp_path_factory) -> Path:
    """A 2-source Gaussian bundle (ρ = 0.9) trained for a few seconds."""
    from training.pipeline import train_and_export

    path, _ = train_and_export(tiny_gaussian_config(), tmp_path_factory.mktemp("bundles") / "gaussian")
    return path


@pytest.fixture(scope="session")
def gaussian_eval(gaussian_bundle) -> dict:
    """Offline evaluation of :func:`gaussian_bundle` (payloads, reconstructions) to compare live runs with."""
    from training.evaluate import evaluate_bundle

    return evaluate_bundle(gaussian_bundle)


@pytest.fixture(scope="session")
def ecg_synth_bundle(tmp_path_factory) -> Path:
    """A 4-node × 3-lead synthetic ECG bundle with conv encoders, trained briefly."""
    from training.pipeline import train_and_export
    from training.presets import get_preset

    cfg = get_preset("ecg-synth-quick").replace(steps=60, progress=False)
    cfg.data.n_windows = 120
    path, _ = train_and_export(cfg, tmp_path_factory.mktemp("bundles") / "ecg_synth")
    return path


def require_system_tools() -> bool:
    """CI sets this so tests needing Debian tools fail instead of skipping."""
    return os.environ.get("NDSC_REQUIRE_SYSTEM_TOOLS") == "1"


#: set to 1 (``.ci/run`` does) so tests needing the shared data folder fail instead of skipping
REQUIRE_SHARED_DATA = "NDSC_REQUIRE_SHARED_DATA"


def shared_data(relative: str, marker: str = "README.md") -> Path:
    """``../shared/<relative>``: data sets kept beside the checkout (PhysioNet records, ...).

    A fresh clone has no such folder: the test is skipped with one reason, or fails when
    ``NDSC_REQUIRE_SHARED_DATA=1`` (CI), so the data-bound tests cannot silently stop running.
    """
    path = SHARED / relative
    if (path / marker).is_file():
        return path
    reason = (f"needs the shared data folder {path} (not part of a clone; tests with data that ships "
              f"with a dependency run without it)")
    if os.environ.get(REQUIRE_SHARED_DATA) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_SHARED_DATA}=1 demands it")
    pytest.skip(reason)


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/NAME.py`` (a script folder, not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"ndsc_bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_torch_thread():
    """torch on one thread, as on the shared 2-core CI machine; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
