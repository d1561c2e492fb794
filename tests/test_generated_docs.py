"""docs/environment.md and docs/metrics.md are generated from the code and must be current."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

from tests.conftest import REPO


def _gen_docs():
    spec = importlib.util.spec_from_file_location("ndsc_gen_docs", REPO / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_reference_pages_are_current():
    out = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_every_setting_and_metric_is_on_its_page():
    import dataclasses

    from edge_encoder.settings import EdgeSettings
    from fusion_decoder.settings import DecoderSettings

    env_page = (REPO / "docs" / "environment.md").read_text()
    for cls in (DecoderSettings, EdgeSettings):
        for f in dataclasses.fields(cls):
            assert f"| `{f.metadata['env']}` | `--{f.name.replace('_', '-')}` |" in env_page
    metrics_page = (REPO / "docs" / "metrics.md").read_text()
    for name in ("ndsc_uplink_payload_bytes_total", "ndsc_capture_to_reconstruction_seconds_bucket",
                 "ndsc_audit_prd_percent", "ndsc_edge_frames_total", "ndsc_edge_skipped_windows_total"):
        assert f"`{name}`" in metrics_page


def test_a_stale_page_is_caught(tmp_path, monkeypatch):
    gen = _gen_docs()
    for name in gen.PAGES:
        shutil.copy(REPO / "docs" / name, tmp_path / name)
    monkeypatch.setattr(gen, "DOCS", tmp_path)
    assert gen.main(["--check"]) == 0
    page = tmp_path / "metrics.md"
    page.write_text(page.read_text().replace("| `ndsc_active_streams` |", "| `ndsc_open_streams` |"))
    assert gen.main(["--check"]) == 1
