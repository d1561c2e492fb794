"""The layering (import-linter contracts in pyproject.toml), ruff and mypy, run by the test suite so
``./dev test`` (the README's command, what .ci/run runs) enforces them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("ndsc", "edge_encoder", "models", "fusion_decoder", "training", "app")
#: formatted and type-checked: the core and the edge (the other packages are linted only)
STRICT = ("ndsc", "edge_encoder")


def _run(*cmd: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_layering_contracts_hold():
    out = _run("lint-imports", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 kept, 0 broken" in out.stdout


def test_an_edge_module_that_imports_torch_breaks_the_contracts(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "bundles"))
    with open(tmp_path / "edge_encoder" / "settings.py", "a") as f:
        f.write("\nimport torch  # noqa: E402,F401\nimport training.train  # noqa: E402,F401\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = _run("lint-imports", "--no-cache", "--config", str(REPO / "pyproject.toml"), cwd=tmp_path, env=env)
    assert out.returncode != 0
    assert "The edge never imports torch, the models, training or the decoder BROKEN" in out.stdout
    assert "Nothing at serve time imports training BROKEN" in out.stdout
    assert "edge_encoder.settings -> torch" in out.stdout


def test_ruff_finds_nothing():
    out = _run("ruff", "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_core_and_the_edge_are_formatted():
    out = _run("ruff", "format", "--no-cache", "--check", *STRICT)
    assert out.returncode == 0, f"run `ruff format {' '.join(STRICT)}`:\n{out.stdout}{out.stderr}"


def test_mypy_finds_nothing_in_the_core_and_the_edge():
    out = _run("mypy")  # files and options: [tool.mypy] in pyproject.toml
    assert out.returncode == 0, out.stdout + out.stderr
