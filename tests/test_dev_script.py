"""`./dev` installs once: a stamp of pyproject.toml + constraints + Python skips the install until one changes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

VENV = Path(sys.prefix)
STAMP = VENV / ".ndsc-install-stamp"


def _wanted_stamp(folder: Path) -> str:
    """The stamp ./dev wants for the pyproject.toml and constraints-cpu.txt in ``folder`` (its own function)."""
    script = "set -euo pipefail; " + "\n".join(
        line for line in (REPO / "dev").read_text().split("\n\n")
        if line.startswith("wanted_stamp()")) + "\nwanted_stamp"
    out = subprocess.run(["bash", "-c", script], cwd=folder, env={**os.environ, "VENV": str(VENV)},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_dev_skips_the_install_when_nothing_changed():
    if not STAMP.is_file():
        pytest.skip(f"this venv ({VENV}) was not installed by ./dev (no {STAMP.name})")
    assert STAMP.read_text().strip() == _wanted_stamp(REPO)
    start = time.monotonic()
    out = subprocess.run([str(REPO / "dev"), "setup"], env={**os.environ, "NDSC_VENV": str(VENV)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stderr
    assert time.monotonic() - start < 10


def test_a_changed_pyproject_or_constraints_file_changes_the_stamp(tmp_path):
    for name in ("pyproject.toml", "constraints-cpu.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    same = _wanted_stamp(tmp_path)
    assert same == _wanted_stamp(REPO)
    (tmp_path / "constraints-cpu.txt").write_text((REPO / "constraints-cpu.txt").read_text() + "\nnumpy<3\n")
    assert _wanted_stamp(tmp_path) != same
    shutil.copy(REPO / "constraints-cpu.txt", tmp_path / "constraints-cpu.txt")
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text().replace("0.1.0", "0.1.1"))
    assert _wanted_stamp(tmp_path) != same


def test_the_licence_is_an_spdx_string_and_ci_runs_the_readme_commands():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"  # a TOML table is deprecated in setuptools >= 77
    assert "setuptools>=77" in project["build-system"]["requires"][0]
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "./dev test"
