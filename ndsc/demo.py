"""The local multi-sensor demo: one decoder and N edge nodes as separate processes.

``ndsc demo`` maps its options to a plan (bundle + one source spec per node), starts
``ndsc decoder`` and ``ndsc edge`` processes on loopback, and redraws a table from the
decoder's Prometheus endpoint once a second: per-node uplink kbit/s, total vs raw
16-bit rate, capture→reconstruction latency and distortion on audited windows.
Ctrl-C (or ``--duration``) stops the edges, then the decoder (which drains), and
waits for every process.

To add an input (say ``--ecg RECORD``), extend :class:`DemoOptions` and
:func:`plan_demo`: everything after the plan is independent of where windows come from.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ndsc.bundle import Bundle, BundleError, load_bundle
from ndsc.bundles import DEFAULT_BUNDLE, default_bundle

#: steps when the demo must train its bundle itself (under 2 minutes on 2 CPU cores)
FALLBACK_STEPS = 300
#: seconds from spawning the edge processes to their shared pacing epoch (``ndsc edge --start-at``):
#: time for every node to start, so all release window k together and none skips the first windows
EDGE_START_MARGIN = 3.0


@dataclass
class DemoOptions:
    """What the user asked for."""

    bundle: str | None = None        # bundle dir; default: the shipped ecg-synth-quick (trained if missing)
    source: str | None = None        # one source spec for every node; default: the bundle's replay spec
    nodes: int | None = None         # first K sources only; default: all of the bundle's sources
    duration: float | None = None    # stop by itself after this many seconds
    fast: bool = False               # nodes send as fast as possible instead of real time
    audit_every: int = 10            # 1 in N windows audited for distortion
    flush_interval: float = 0.0
    deadline: float = 3.0
    refresh: float = 1.0
    work_dir: str | None = None      # logs (and a trained bundle) go here
    ecg: str | None = None           # a real ECG record (WFDB path, .dcm, 'pydicom'): one node per lead group
    quality: str | None = None       # operating point of a variable-rate bundle for every node; default: its default


@dataclass
class DemoPlan:
    """What the demo runs: a bundle and one source spec per node."""

    bundle: Path
    sources: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> int:
        return len(self.sources)


def train_fallback_bundle(work_dir: Path, out: IO = sys.stdout) -> Path:
    """Train the default preset briefly with ``ndsc train`` (a subprocess: serving never imports training)."""
    path = work_dir / DEFAULT_BUNDLE
    if (path / "manifest.json").is_file():
        return path
    print(f"no shipped bundle: training {DEFAULT_BUNDLE} for {FALLBACK_STEPS} steps (about a minute)…",
          file=out, flush=True)
    subprocess.run([sys.executable, "-m", "ndsc", "--log-level", "WARNING", "train", "--preset", DEFAULT_BUNDLE,
                    "--steps", str(FALLBACK_STEPS), "--out", str(path)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})  # one thread: far faster on a busy small machine
    return path


def plan_demo(options: DemoOptions, work_dir: Path, out: IO = sys.stdout) -> DemoPlan:
    """Map demo options to (bundle, per-node source specs)."""
    bundle_path = Path(options.bundle) if options.bundle else (default_bundle() or train_fallback_bundle(work_dir, out))
    bundle = load_bundle(bundle_path)
    n = options.nodes or bundle.n_sources
    if not 1 <= n <= bundle.n_sources:
        raise ValueError(f"--nodes must be 1..{bundle.n_sources}")
    if options.ecg:
        from ndsc.demo_ecg import ecg_sources

        return DemoPlan(bundle_path, ecg_sources(bundle, options.ecg, n))
    return DemoPlan(bundle_path, [options.source or endless_replay(bundle)] * n)


#: joint synthetic generators: window k is a pure function of (seed, k), so a replay can
#: go on past the test split with fresh windows the model never trained on
_ENDLESS_SCHEMES = ("gaussian", "ecg-synth")


def endless_replay(bundle: Bundle) -> str:
    """The bundle's test-split replay spec, without its window count for synthetic sources."""
    spec = bundle.extra.get("edge_source") or "bundle"
    scheme, _, args = spec.partition(":")
    if scheme not in _ENDLESS_SCHEMES:
        return spec
    return scheme + ":" + ",".join(part for part in args.split(",") if not part.startswith("count="))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _read_ready(proc: subprocess.Popen, prefix: str, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before it was ready")
            continue
        if line.startswith(prefix):
            return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
    raise TimeoutError(f"no {prefix} line within {timeout:.0f}s")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One Prometheus text scrape → {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _select(samples: dict, name: str, **match: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in samples.items()
            if n == name and all(dict(labels).get(k) == val for k, val in match.items())}


def _sum(samples: dict, name: str, **match: str) -> float:
    return sum(_select(samples, name, **match).values())


class Dashboard:
    """Turns successive scrapes of the decoder into the demo's table."""

    def __init__(self, bundle: Bundle, plan: DemoPlan):
        self.bundle = bundle
        self.plan = plan
        self.prev: dict | None = None
        self.prev_t = 0.0
        self.first: dict | None = None
        self.first_t = 0.0

    def render(self, samples: dict, now: float) -> str:
        if self.first is None:
            self.first, self.first_t = samples, now
        prev, dt = (self.prev, now - self.prev_t) if self.prev is not None else (samples, 0.0)
        self.prev, self.prev_t = samples, now

        def rate(name, **match):  # bytes/s → kbit/s over the last refresh
            return 8 * (_sum(samples, name, **match) - _sum(prev, name, **match)) / dt / 1000 if dt > 0 else 0.0

        lines = [f"{'node':<8}{'source':<12}{'frames':>8}{'uplink kbit/s':>15}{'bits/sample':>13}"
                 f"{'PSNR dB':>9}{'PRD %':>8}{'RMSE':>9}"]
        for i in range(self.plan.nodes):
            name = self.bundle.sources[i].name
            frames = _sum(samples, "ndsc_frames_total", node=f"node{i}", status="accepted")
            bps = _sum(samples, "ndsc_bits_per_sample", source=str(i))
            psnr = _select(samples, "ndsc_audit_psnr_db", source=str(i))
            prd = _select(samples, "ndsc_audit_prd_percent", source=str(i))
            rmse = _select(samples, "ndsc_audit_rmse", source=str(i))
            fmt = (lambda d, f: f.format(next(iter(d.values()))) if d else "-")
            lines.append(f"{'node' + str(i):<8}{name[:11]:<12}{frames:>8.0f}{rate('ndsc_uplink_payload_bytes_total', node=f'node{i}'):>15.3f}"
                         f"{bps:>13.3f}{fmt(psnr, '{:.1f}'):>9}{fmt(prd, '{:.1f}'):>8}{fmt(rmse, '{:.4f}'):>9}")
        payload = rate("ndsc_uplink_payload_bytes_total")
        protocol = rate("ndsc_uplink_protocol_bytes_total")
        raw = 16 * (_sum(samples, "ndsc_uplink_samples_total") - _sum(prev, "ndsc_uplink_samples_total")) / dt / 1000 \
            if dt > 0 else 0.0
        lat_n = _sum(samples, "ndsc_capture_to_reconstruction_seconds_count") - _sum(
            prev, "ndsc_capture_to_reconstruction_seconds_count")
        lat_s = _sum(samples, "ndsc_capture_to_reconstruction_seconds_sum") - _sum(
            prev, "ndsc_capture_to_reconstruction_seconds_sum")
        windows = _sum(samples, "ndsc_reconstructions_total")
        missing = _sum(samples, "ndsc_aligner_missing_sources_total")
        ratio = f"{raw / payload:.0f}x smaller" if payload > 0 else "-"
        lines += [
            f"total uplink {payload:.3f} kbit/s payload + {protocol:.3f} kbit/s protocol "
            f"vs raw 16-bit {raw:.1f} kbit/s ({ratio})",
            f"reconstructed {windows:.0f} windows, {missing:.0f} source-windows estimated (node late/missing); "
            f"capture→reconstruction mean {1000 * lat_s / lat_n:.0f} ms" if lat_n else
            f"reconstructed {windows:.0f} windows, {missing:.0f} source-windows estimated (node late/missing)",
        ]
        return "\n".join(lines)


class Demo:
    """Runs a :class:`DemoPlan` as processes and shows the table until stopped."""

    def __init__(self, options: DemoOptions, out: IO = sys.stdout):
        self.options = options
        self.out = out
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.lead_quality = None  # ndsc.demo_ecg.LeadQuality with --ecg
        self.work_dir = Path(options.work_dir or tempfile.mkdtemp(prefix="ndsc-demo-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.work_dir / f"{name}.log", "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Children get their own session: the terminal's Ctrl-C reaches only the demo, which
        # then stops them in order (edges first, so the decoder drains their last windows).
        proc = subprocess.Popen([sys.executable, "-m", "ndsc", *args], stdout=subprocess.PIPE, stderr=log,
                                text=True, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def run(self) -> int:
        o, out = self.options, self.out
        # Ctrl-C and `kill` both stop the demo; SIGINT explicitly too, since a shell that
        # starts the demo in the background leaves SIGINT ignored.
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            plan = plan_demo(o, self.work_dir, out)
            bundle = load_bundle(plan.bundle)
            try:  # an unknown point fails here, in one line, not as N edge processes exiting
                quality = bundle.sources[0].quality(o.quality)  # every source has the same points
            except BundleError as exc:
                print(f"ndsc demo: {exc}", file=sys.stderr)
                return 2
            decoder = self._spawn("decoder", ["decoder", "--bundle", str(plan.bundle), "--listen", "127.0.0.1:0",
                                              "--metrics-port", "0", "--deadline", str(o.deadline)])
            ready = _read_ready(decoder, "NDSC_DECODER_READY", 120)
            address, metrics = ready["grpc"], ready["metrics"]
            at = (f" at quality {quality.name} (points {', '.join(bundle.quality_names)})" if quality else "")
            print(f"bundle {plan.bundle} ({bundle.bundle_id[:19]}…), {plan.nodes} nodes{at}, logs in {self.work_dir}",
                  file=out)
            print(f"decoder (pid {decoder.pid}) gRPC {address} (health + reflection on), metrics {metrics}", file=out)
            # One shared epoch for every node: window k is captured (and sent) at the same instant on all of
            # them, so latency holds no start-up skew between the node processes.
            start_at = f"{time.time() + EDGE_START_MARGIN:.6f}"
            for i, spec in enumerate(plan.sources):
                args = ["edge", "--bundle", str(plan.bundle), "--source-index", str(i), "--source", spec,
                        "--decoder", address, "--group", "demo", "--node-id", f"node{i}", "--metrics-port", "0",
                        "--audit-every", str(o.audit_every), "--flush-interval", str(o.flush_interval),
                        "--start-at", start_at] + (["--quality", quality.name] if quality else [])
                self._spawn(f"edge{i}", args + (["--fast"] if o.fast else []))
            for name, proc in self.procs[1:]:
                ready = _read_ready(proc, "NDSC_EDGE_READY", 120)
                point = f" quality {ready['quality']}" if ready.get("quality") else ""  # as the edge resolved it
                print(f"{name} (pid {proc.pid}) metrics {ready.get('metrics')}{point}", file=out)
            print("Ctrl-C stops every process.", file=out, flush=True)
            if o.ecg:
                from ndsc.demo_ecg import LeadQuality

                self.lead_quality = LeadQuality(bundle, plan.sources, address, "demo")
            self._show(metrics, Dashboard(bundle, plan))
        except KeyboardInterrupt:
            print("\nstopping…", file=out, flush=True)
        finally:
            code = self._stop_all()
            if self.lead_quality is not None:
                self.lead_quality.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _show(self, metrics_url: str, dashboard: Dashboard) -> None:
        o, out = self.options, self.out
        t0 = time.monotonic()
        tty = hasattr(out, "isatty") and out.isatty()
        while o.duration is None or time.monotonic() - t0 < o.duration:
            time.sleep(o.refresh)
            table = dashboard.render(scrape(metrics_url), time.monotonic())
            if self.lead_quality is not None:
                table += "\n" + self.lead_quality.render()
            if tty:
                out.write("\x1b[H\x1b[J")
            print(f"--- t={time.monotonic() - t0:.0f}s\n{table}", file=out, flush=True)
            if all(proc.poll() is not None for name, proc in self.procs if name.startswith("edge")):
                print("every edge node has finished its source", file=out)
                break

    def _stop_all(self) -> int:
        """Edges first (they send what they hold), then the decoder (it drains); returns 0 if all exited cleanly."""
        clean = True
        edges = [(n, p) for n, p in self.procs if n != "decoder"]
        decoder = [(n, p) for n, p in self.procs if n == "decoder"]
        for group in (edges, decoder):
            for _, p in group:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for name, p in group:
                try:
                    rc = p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    rc = p.wait()
                    print(f"{name} did not stop in time: killed", file=self.out)
                if rc != 0:
                    clean = False
                    print(f"{name} exited with {rc} (log: {self.work_dir / (name + '.log')})", file=self.out)
                if p.stdout:
                    p.stdout.close()
        if self.procs:
            print(f"stopped {len(self.procs)} processes" + (" cleanly" if clean else ""), file=self.out, flush=True)
        return 0 if clean else 1
