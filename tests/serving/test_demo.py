"""`ndsc demo --duration`: decoder + edge processes with the shipped bundle, stopped cleanly."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ndsc.bundles import default_bundle
from app.demo import scrape
from tests.conftest import REPO


def test_shipped_default_bundle_is_intact_and_small():
    path = default_bundle()
    assert path is not None, "run scripts/build_default_bundles.py"
    # six quality points' static tables live in the manifest (about 1.3 MB of it)
    assert sum(p.stat().st_size for p in path.iterdir()) < 2_000_000


def _screens(text: str) -> list[tuple[float, str]]:
    """(t, screen) of every live table the demo printed."""
    parts = text.split("--- t=")[1:]
    return [(float(p.split("s", 1)[0]), p.split("=== run totals", 1)[0]) for p in parts]


def _total_line(screen: str) -> tuple[float, float, float]:
    """(payload kbit/s, raw kbit/s, ratio) of a screen's summary line."""
    m = re.search(r"total uplink ([\d.]+) kbit/s payload .* vs raw 16-bit ([\d.]+) kbit/s \((\d+)x smaller\)", screen)
    assert m, screen
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def _node_rates(screen: str) -> list[tuple[float, float]]:
    """(uplink kbit/s, raw kbit/s) per node row."""
    return [(float(k), float(r)) for k, r in re.findall(r"^node\d\s+\S+\s+\d+\s+([\d.]+)\s+([\d.]+)", screen, re.M)]


def test_demo_figures_are_right_steady_and_end_with_the_runs_totals(tmp_path):
    """Default demo (shipped ecg-12lead, pydicom's ECG): 12 leads × 500 Hz × 16 bit = 96 kbit/s raw."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "ndsc", "demo", "--duration", "14", "--audit-every", "2"],
                         capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert re.search(r"decoder \(pid \d+\) gRPC 127\.0\.0\.1:\d+ .*metrics http://127\.0\.0\.1:\d+/metrics", text)
    assert len(re.findall(r"edge\d \(pid \d+\) metrics http://127\.0\.0\.1:\d+/metrics", text)) == 4
    assert "stopped 5 processes cleanly" in text and out.stderr == ""
    assert list(tmp_path.glob("ndsc-demo-*")) == []  # the temporary folder is gone

    live = [(t, s) for t, s in _screens(text) if "x smaller" in s]
    assert live and live[0][0] <= 8, text  # first window: 3 s start margin + one 2.05 s window (+ load)
    # on a loaded machine a node's first frames may land after the first screen: its row reads "-"
    # until they do; from the first screen with every node on, every screen has all four
    everyone = [k for k, (_, s) in enumerate(live) if len(_node_rates(s)) == 4]
    assert everyone and live[everyone[0]][0] <= 12, text
    rates, silent = [], []
    for _, screen in live[everyone[0]:]:
        nodes = _node_rates(screen)
        payload, raw, ratio = _total_line(screen)
        assert [r for _, r in nodes] == [24.0] * 4 and raw == 96.0  # 3 leads × 500 Hz × 16 bit per node
        assert payload == pytest.approx(sum(k for k, _ in nodes), abs=0.003)  # the line adds up the table
        assert ratio == round(raw / payload)
        silent.append(tuple(k == 0 for k, _ in nodes))
        rates.append(payload)
    # a screen may fall between a window's frames arriving and its decoding (a loaded machine): it reads
    # "-" until then; from the first decoded window on, every screen has latency and PRDN
    decoded = [k for k, (_, s) in enumerate(live) if re.search(r"p50 \d+ ms, p99 \d+ ms", s)]
    assert decoded and live[decoded[0]][0] <= 12, text
    for _, screen in live[decoded[0]:]:
        assert re.search(r"p50 \d+ ms, p99 \d+ ms", screen)
        assert re.search(r"PRDN per lead over \d+ decoded windows .*: I [\d.]+% II", screen)
    assert max(rates) < 1.6 * min(rates), rates  # steady: a span of windows, not one refresh
    # Never flips to 0.000 between windows: a node is at 0 on every screen (ecg-12lead's aVR/aVL/aVF
    # node, whose leads the decoder derives from I and II, sends empty payloads) or on none.
    assert len(set(silent)) == 1 and not all(silent[0]), silent

    totals = text.split("=== run totals", 1)[1]
    payload, raw, ratio = _total_line(totals)
    assert raw == 96.0 and payload > 0 and payload == pytest.approx(sum(k for k, _ in _node_rates(totals)), abs=0.003)
    frames = [int(m) for m in re.findall(r"^node\d\s+\S+\s+(\d+)", totals, re.M)]
    windows = int(re.search(r"reconstructed (\d+) windows", totals).group(1))
    assert len(frames) == 4 and min(frames) >= 3 and windows == min(frames)
    prdn = dict(re.findall(r"(\w+) ([\d.]+)%", totals.split("PRDN per lead", 1)[1]))
    assert list(prdn) == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


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
    for name in ("decoder", "edge0", "edge1"):  # --work-dir: the logs are kept
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text()
