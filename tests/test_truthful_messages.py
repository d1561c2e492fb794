"""What the CLI says is what it does: help names the real defaults, bundle checks say why, ids match the disk."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from ndsc.bundle import BundleModified, BundleNotFound, load_bundle
from ndsc.bundles import BUNDLES_DIR, DEFAULT_BUNDLE, default_bundle
from tests.conftest import REPO


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from app.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_with_a_default_names_it_in_its_help():
    wrong = []
    for name, parser in _subcommands().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if (action.help in (None, argparse.SUPPRESS) or action.default in (None, False, argparse.SUPPRESS)
                    or isinstance(action.default, list)):
                continue
            if str(action.default) not in formatter._expand_help(action):
                wrong.append((name, action.dest, action.default))
    assert not wrong


def test_demo_help_names_the_bundle_and_settings_that_run():
    from app.demo_options import DEFAULTS

    out = subprocess.run([sys.executable, "-m", "ndsc", "demo", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    text = " ".join(out.stdout.split())
    assert out.returncode == 0 and f"the shipped {DEFAULT_BUNDLE}" in text and "ecg-synth-quick" not in text
    assert f"aligner deadline, seconds (default: {DEFAULTS.deadline})" in text
    assert f"audit 1 in N windows for distortion (default: {DEFAULTS.audit_every})" in text


@pytest.fixture
def bundles_root(tmp_path):
    """A copy of the package's bundle folder holding the default bundle."""
    root = tmp_path / "bundles"
    shutil.copytree(BUNDLES_DIR / DEFAULT_BUNDLE, root / DEFAULT_BUNDLE)
    return root


def test_a_missing_shipped_bundle_says_missing_and_names_the_shipped_ones(bundles_root):
    assert default_bundle(DEFAULT_BUNDLE, root=bundles_root) == bundles_root / DEFAULT_BUNDLE
    with pytest.raises(BundleNotFound, match=rf"'no-such' is missing .*shipped: {DEFAULT_BUNDLE}\)"):
        default_bundle("no-such", root=bundles_root)
    (bundles_root / DEFAULT_BUNDLE / "encoder_2.onnx").unlink()
    with pytest.raises(BundleNotFound, match="is incomplete: bundle file encoder_2.onnx missing"):
        default_bundle(DEFAULT_BUNDLE, root=bundles_root)


def test_a_tampered_shipped_bundle_says_modified_and_nothing_is_trained_instead(bundles_root):
    weights = bundles_root / DEFAULT_BUNDLE / "decoder.pt"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped
    with pytest.raises(BundleModified, match=r"fails its check: bundle file decoder.pt was modified"):
        default_bundle(DEFAULT_BUNDLE, root=bundles_root)
    demo_code = (REPO / "app" / "demo.py").read_text()
    assert '"train"' not in demo_code and "train_and_export" not in demo_code  # no substitute is trained


def test_ndsc_train_prints_the_bundle_id_on_disk(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ndsc", "--log-level", "WARNING", "train", "--preset",
                          "gaussian-quick", "--steps", "10", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    printed = re.search(r"^bundle \S+ \((sha256:[0-9a-f]{64})\)", out.stdout, re.M).group(1)
    assert printed == load_bundle(tmp_path / "b").bundle_id
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["bundle_id"] == printed and "bundle_id" not in manifest["evaluation"]["test"]
