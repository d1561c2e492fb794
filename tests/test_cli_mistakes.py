"""Every mistake a user can make on the command line is one line on stderr, a non-zero exit, nothing running.

Each test runs the real ``ndsc`` as a process (ports on 127.0.0.1): the line must say what is
wrong and what to do, no traceback unless ``--debug``, and the process must have exited
within the timeout; the demo must not have started a decoder or an edge first.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SHIPPED = REPO / "ndsc" / "bundles" / "ecg-12lead"


def ndsc(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run ``python -m ndsc ARGS`` to completion (TimeoutExpired fails the test: it must not hang)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ndsc", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


def one_line(result: subprocess.CompletedProcess, *says: str, status: int = 2) -> str:
    """The single stderr line of a failed command, checked to contain every one of ``says``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, (result.returncode, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in says:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def nothing_started(result: subprocess.CompletedProcess) -> None:
    assert "pid" not in result.stdout and "NDSC_" not in result.stdout, result.stdout


@pytest.fixture
def busy_port():
    """A port held by a listening socket on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.fixture
def tampered_bundle(tmp_path) -> Path:
    """The shipped bundle with one manifest figure edited after export."""
    path = tmp_path / "tampered"
    shutil.copytree(SHIPPED, path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["sample_rate"] = 1000.0
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_a_bundle_directory_that_does_not_exist_is_one_line(tmp_path):
    missing = tmp_path / "no-such-bundle"
    result = ndsc("demo", "--bundle", str(missing), "--duration", "1")
    one_line(result, f"no bundle at {missing}", "ndsc train --out DIR")
    nothing_started(result)
    one_line(ndsc("eval", str(missing)), "ndsc eval: error:", f"no bundle at {missing}")


def test_a_tampered_manifest_is_one_line_saying_modified(tampered_bundle):
    result = ndsc("demo", "--bundle", str(tampered_bundle), "--duration", "1")
    one_line(result, "manifest was modified after export", "restore its files")
    nothing_started(result)
    one_line(ndsc("eval", str(tampered_bundle)), "manifest was modified after export")


def test_a_busy_metrics_or_grpc_port_is_one_line_and_the_process_exits(busy_port):
    port = str(busy_port)
    one_line(ndsc("decoder", "--bundle", str(SHIPPED), "--listen", "127.0.0.1:0", "--metrics-port", port),
             port, "in use")
    one_line(ndsc("decoder", "--bundle", str(SHIPPED), "--listen", f"127.0.0.1:{port}", "--metrics-port", "0"),
             port, "in use")
    one_line(ndsc("edge", "--bundle", str(SHIPPED), "--metrics-port", port), port, "in use")


def test_a_file_that_is_no_ecg_record_stops_the_demo_before_any_process():
    result = ndsc("demo", "--ecg", "README.md", "--duration", "1")
    one_line(result, "--ecg README.md", "no WFDB header", "fix the source spec")
    nothing_started(result)


def test_a_dicom_without_a_waveform_is_one_line(tmp_path):
    from pydicom import examples

    image = tmp_path / "ct.dcm"
    shutil.copy(examples.get_testdata_file("CT_small.dcm"), image)
    result = ndsc("demo", "--ecg", str(image), "--duration", "1")
    one_line(result, "has no waveform")
    nothing_started(result)


def test_a_record_without_the_bundles_leads_is_one_line(tmp_path):
    from ndsc.sources.ecg import read_dicom
    from tests.ecg.conftest import write_wfdb

    rec = read_dicom("pydicom").select(["V1", "V2"]).resample(500)
    path = write_wfdb(tmp_path, "two-leads", rec.signal, rec.leads, 500)
    result = ndsc("demo", "--ecg", str(path), "--duration", "1")
    one_line(result, "node 0 cannot open", "no lead")
    nothing_started(result)


def test_an_unknown_source_scheme_is_one_line_naming_the_known_ones():
    result = ndsc("demo", "--source", "foo:bar", "--duration", "1")
    one_line(result, "--source", "unknown source scheme 'foo'", "known: ", "dicom")
    nothing_started(result)


def test_nodes_whose_source_never_delivers_are_one_line_not_a_clean_exit(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # closed again: nothing listens there
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    result = subprocess.run([sys.executable, "-m", "ndsc", "demo", "--source", f"tcp:127.0.0.1:{port}#fs=500,gain=1000",
                             "--duration", "60"], capture_output=True, text=True, timeout=150, cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(env_tmp)})
    line = one_line(result, "ended without a window decoded", f"127.0.0.1:{port}", "Connection refused",
                    "fix their source", status=1)
    kept = [p for p in env_tmp.glob("ndsc-demo-*")]
    assert len(kept) == 1 and str(kept[0]) in line and (kept[0] / "edge0.log").is_file()
    assert "stopped 5 processes cleanly" in result.stdout  # every process ended; none left running


def test_debug_shows_the_traceback(tmp_path):
    result = ndsc("--debug", "eval", str(tmp_path / "no-such-bundle"))
    assert result.returncode != 0 and "Traceback" in result.stderr and "BundleNotFound" in result.stderr
    result = ndsc("demo", "--debug", "--bundle", str(tmp_path / "no-such-bundle"))
    assert result.returncode != 0 and "Traceback" in result.stderr
