"""`ndsc demo --duration`: decoder + edge processes with the shipped bundle, stopped cleanly."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from ndsc.bundles import default_bundle
from ndsc.demo import scrape
from tests.conftest import REPO


def test_shipped_default_bundle_is_intact_and_small():
    path = default_bundle()
    assert path is not None, "run scripts/build_default_bundles.py"
    assert sum(p.stat().st_size for p in path.iterdir()) < 1_000_000


def test_demo_runs_every_process_and_stops_them_cleanly(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "ndsc", "demo", "--duration", "6", "--audit-every", "2",
                          "--work-dir", str(tmp_path)], capture_output=True, text=True, timeout=150, cwd=REPO,
                         env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert re.search(r"decoder \(pid \d+\) gRPC 127\.0\.0\.1:\d+ .*metrics http://127\.0\.0\.1:\d+/metrics", text)
    assert len(re.findall(r"edge\d \(pid \d+\) metrics http://127\.0\.0\.1:\d+/metrics", text)) == 4
    assert "stopped 5 processes cleanly" in text
    last = text.rsplit("--- t=", 1)[1]
    frames = [int(m) for m in re.findall(r"^node\d\s+\S+\s+(\d+)", last, re.M)]
    assert len(frames) == 4 and min(frames) > 0
    assert re.search(r"total uplink [\d.]+ kbit/s payload .* vs raw 16-bit [\d.]+ kbit/s", last)
    for name in ("decoder", "edge0", "edge3"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text()


def test_ctrl_c_stops_the_demo_and_every_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ndsc", "demo", "--nodes", "2", "--work-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("--- t="):  # the table is live: every process is up
            break
    edge_metrics = re.search(r"edge0 \(pid \d+\) metrics (\S+)", "".join(lines)).group(1)
    while not scrape(edge_metrics).get(("ndsc_edge_frames_total", (("group", "demo"), ("node", "node0"),
                                                                   ("source", "0")))):
        time.sleep(0.2)  # each node exports its own counters on its own port
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(lines) + rest
    assert proc.returncode == 0, text
    assert "stopped 3 processes cleanly" in text
    pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
    assert len(pids) == 3
    for pid in pids:  # every child has exited (and was reaped by the demo)
        assert not os.path.exists(f"/proc/{pid}")
