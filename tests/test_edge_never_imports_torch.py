import subprocess
import sys

CHECK = """
import sys
import ndsc, ndsc.entropy, ndsc.bundle, ndsc.metrics, ndsc.bounds, ndsc.sources, app.cli
import edge_encoder, edge_encoder.encoder
from ndsc.sources.base import registered_schemes
registered_schemes()
for name in ("edge_encoder.node", "edge_encoder.cli", "ndsc.wire"):
    try:
        __import__(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("TORCH" if bad else "CLEAN")
"""


def test_edge_and_core_never_import_torch():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("CLEAN"), out.stdout + out.stderr


def test_ndsc_edge_help_does_not_load_torch():
    code = "import sys; from app.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
