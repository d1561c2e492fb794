"""The local multi-sensor demo: one decoder and N edge nodes as separate processes.

``ndsc demo`` maps its options to a plan (bundle + one source spec per node) and checks
it before starting anything: the bundle (the shipped ``ecg-12lead`` unless ``--bundle``)
must pass its byte-for-byte check, and every node's source must open. Then it starts
``ndsc decoder`` and ``ndsc edge`` processes on loopback and redraws a table from the
decoder's Prometheus endpoint once a second (:mod:`app.demo_figures`); when the nodes
replay an ECG record it also shows PRDN per lead of the live reconstructions
(:mod:`app.demo_ecg`). Ctrl-C (or ``--duration``) stops the edges, then the decoder
(which drains), prints the run's totals and removes the temporary folder.

To add an input (say ``--ecg RECORD``), extend :class:`DemoOptions` and
:func:`plan_demo`: everything after the plan is independent of where windows come from.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ndsc.bundle import Bundle, BundleError, load_bundle
from ndsc.bundles import DEFAULT_BUNDLE, STEREO_BUNDLE, default_bundle
from app.demo_figures import Dashboard, scrape
from app.demo_options import DEFAULTS, DemoOptions
from ndsc.errors import UsageError

__all__ = ["DEFAULTS", "Demo", "DemoOptions", "DemoPlan", "EDGE_START_MARGIN", "endless_replay", "plan_demo",
           "scrape"]

#: seconds from spawning the edge processes to their shared pacing epoch (``ndsc edge --start-at``):
#: time for every node to start, so all release window k together and none skips the first windows
EDGE_START_MARGIN = 3.0
#: seconds a process gets to print its ready line
READY_TIMEOUT = 120.0

#: seconds the demo's decoder may spend decoding its queue when stopped (``ndsc decoder --drain-timeout``):
#: the totals are printed before it stops, so a backlog decoded then is never shown, and a backlog of
#: whole stereo frames (seconds each on a loaded CPU) held the stop for minutes. The demo keeps no
#: journal: what is left is dropped, counted and logged in decoder.log.
DECODER_DRAIN_BUDGET = 5.0
#: seconds the demo waits for the decoder to exit after SIGTERM (edges get 15): its drain budget, the
#: batch in flight (one whole frame at most) and teardown
_DECODER_DRAIN_SECONDS = 60.0


@dataclass
class DemoPlan:
    """What the demo runs: a bundle and one source spec per node."""

    bundle: Path
    sources: list[str] = field(default_factory=list)
    ecg_record: bool = False         # the sources replay an ECG record: show PRDN per lead against it
    quality: str | None = None       # the operating point every node codes at (variable-rate bundles)
    stereo: bool = False             # the nodes are two cameras of scikit-image's pair: PSNR/MS-SSIM per view

    @property
    def nodes(self) -> int:
        return len(self.sources)


#: joint synthetic generators: window k is a pure function of (seed, k), so a replay can
#: go on past the test split with fresh windows the model never trained on
_ENDLESS_SCHEMES = ("gaussian", "ecg-synth")
#: schemes that replay a recorded ECG file (PRDN per lead can be computed against it)
_RECORD_SCHEMES = ("dicom", "wfdb")


def endless_replay(bundle: Bundle) -> str:
    """The bundle's test-split replay spec, without its window count for synthetic sources."""
    spec = bundle.extra.get("edge_source") or "bundle"
    scheme, _, args = spec.partition(":")
    if scheme not in _ENDLESS_SCHEMES:
        return spec
    return scheme + ":" + ",".join(part for part in args.split(",") if not part.startswith("count="))


def _check_sources(bundle: Bundle, specs: list[str], flag: str) -> None:
    """Open every node's source as its edge process will (no torch): a bad spec stops the demo first."""
    from ndsc.sources import SourceError, open_source

    for i, spec in enumerate(specs):
        source = bundle.sources[i]
        try:
            open_source(spec, i, source.input_shape, frame_stride=source.frame_stride)
        except SourceError as exc:
            raise UsageError(f"{flag}: node {i} cannot open {spec!r}: {exc}",
                             "fix the source spec (formats: `ndsc edge --help`, docs/ecg.md)") from exc


def plan_demo(options: DemoOptions) -> DemoPlan:
    """Map demo options to (bundle, per-node source specs), checking both; starts nothing.

    Raises:
        BundleNotFound / BundleModified: the bundle is missing or fails its check (never replaced).
        UsageError: a bad option, or a source a node could not open.
    """
    default = STEREO_BUNDLE if options.stereo else DEFAULT_BUNDLE
    bundle_path = Path(options.bundle) if options.bundle else default_bundle(default)
    bundle = load_bundle(bundle_path)
    n = options.nodes or bundle.n_sources
    if not 1 <= n <= bundle.n_sources:
        raise UsageError(f"--nodes {options.nodes} is out of range", f"give 1..{bundle.n_sources} "
                         f"(the bundle's sources)")
    try:  # an unknown point fails here, in one line, not as N edge processes exiting
        point = bundle.sources[0].quality(options.quality)  # every source has the same points
    except BundleError as exc:
        raise UsageError(str(exc), "leave --quality out for the bundle's default point") from exc
    quality = point.name if point else None
    if options.stereo:
        from app.demo_stereo import stereo_sources

        if options.ecg or options.source:
            raise UsageError("--stereo replays scikit-image's stereo pair", "leave out --ecg and --source")
        sources = stereo_sources(bundle, n)
        _check_sources(bundle, sources, "--stereo")
        return DemoPlan(bundle_path, sources, quality=quality, stereo=True)
    if options.ecg:
        from app.demo_ecg import ecg_sources

        sources = ecg_sources(bundle, options.ecg, n)
        _check_sources(bundle, sources, f"--ecg {options.ecg}")
        return DemoPlan(bundle_path, sources, ecg_record=True, quality=quality)
    sources = [options.source or endless_replay(bundle)] * n
    _check_sources(bundle, sources, "--source" if options.source else "the bundle's replay source")
    record = bundle.modality == "ecg" and sources[0].partition(":")[0] in _RECORD_SCHEMES
    return DemoPlan(bundle_path, sources, ecg_record=record, quality=quality)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _last_log_line(path: Path) -> str:
    """The last error (else warning, else any line) of a process log, without the log prefix."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    for markers in ((" ERROR ", " CRITICAL "), (" WARNING ",)):
        for line in reversed(lines):
            for marker in markers:
                if marker in line:
                    return line.split(marker, 1)[1]
    return lines[-1] if lines else ""


class Demo:
    """Runs a :class:`DemoPlan` as processes and shows the table until stopped."""

    def __init__(self, options: DemoOptions, out: IO = sys.stdout, err: IO = sys.stderr):
        self.options = options
        self.out = out
        self.err = err
        self.procs: list[tuple[str, subprocess.Popen]] = []
        # app.demo_ecg.LeadQuality when the nodes replay an ECG record, app.demo_stereo.ViewQuality
        # for the stereo pair: a line of per-lead / per-view figures under the table
        self.quality_monitor = None
        self.work_dir: Path | None = None
        self.temporary = options.work_dir is None
        self.reported: set[str] = set()  # processes whose failure the user has been told already
        self.edges_ended = False  # every edge finished its source by itself

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Children get their own session: the terminal's Ctrl-C reaches only the demo, which
        # then stops them in order (edges first, so the decoder drains their last windows).
        with open(self.work_dir / f"{name}.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "ndsc", *args], stdout=subprocess.PIPE, stderr=log,
                                    text=True, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def _read_ready(self, name: str, proc: subprocess.Popen, prefix: str) -> dict[str, str]:
        """Fields of the process's ready line; a process that exits first stops the demo with its error."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    self.reported.add(name)
                    log = self.work_dir / f"{name}.log"
                    raise UsageError(f"{name} exited with {proc.returncode} before it was ready: "
                                     f"{_last_log_line(log)}", f"fix what it says (log: {log}; the demo "
                                     f"stopped every process)")
                continue
            if line.startswith(prefix):
                return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
        raise UsageError(f"{name} printed no {prefix} line within {READY_TIMEOUT:.0f}s",
                         f"see {self.work_dir / (name + '.log')}")

    def run(self) -> int:
        """Check the plan, run every process until stopped, print the totals; 0 if all exited cleanly."""
        o, out = self.options, self.out
        plan = plan_demo(o)  # raises before anything is started or created
        bundle = load_bundle(plan.bundle)
        self.work_dir = Path(o.work_dir) if o.work_dir else Path(tempfile.mkdtemp(prefix="ndsc-demo-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        dashboard = Dashboard(bundle, plan.nodes)
        metrics = ""
        t0 = time.monotonic()
        # Ctrl-C and `kill` both stop the demo; SIGINT explicitly too, since a shell that
        # starts the demo in the background leaves SIGINT ignored.
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = 1
        try:
            try:
                metrics = self._start(plan, bundle)
                t0 = time.monotonic()
                self._show(metrics, dashboard, t0)
            except KeyboardInterrupt:
                print("\nstopping…", file=out, flush=True)
            finally:
                code = self._stop_all(metrics, dashboard, t0)
        finally:
            if self.quality_monitor is not None:
                self.quality_monitor.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._clean_up(code)
        return code

    def _start(self, plan: DemoPlan, bundle: Bundle) -> str:
        """Start the decoder and every edge; returns the decoder's metrics URL."""
        o, out = self.options, self.out
        decoder = self._spawn("decoder", ["decoder", "--bundle", str(plan.bundle), "--listen", "127.0.0.1:0",
                                          "--metrics-port", "0", "--deadline", str(o.deadline),
                                          "--drain-timeout", str(DECODER_DRAIN_BUDGET)])
        ready = self._read_ready("decoder", decoder, "NDSC_DECODER_READY")
        address, metrics = ready["grpc"], ready["metrics"]
        logs = "temporary, removed at the end" if self.temporary else "kept"
        at = f" at quality {plan.quality} (points {', '.join(bundle.quality_names)})" if plan.quality else ""
        print(f"bundle {plan.bundle} ({bundle.bundle_id[:19]}…), {plan.nodes} nodes{at}, logs in {self.work_dir} "
              f"({logs})", file=out)
        print(f"decoder (pid {decoder.pid}) gRPC {address} (health + reflection on), metrics {metrics}", file=out)
        # One shared epoch for every node: window k is captured (and sent) at the same instant on all of
        # them, so latency holds no start-up skew between the node processes.
        start_at = f"{time.time() + EDGE_START_MARGIN:.6f}"
        for i, spec in enumerate(plan.sources):
            args = ["edge", "--bundle", str(plan.bundle), "--source-index", str(i), "--source", spec,
                    "--decoder", address, "--group", "demo", "--node-id", f"node{i}", "--metrics-port", "0",
                    "--audit-every", str(o.audit_every), "--flush-interval", str(o.flush_interval),
                    "--start-at", start_at] + (["--quality", plan.quality] if plan.quality else [])
            self._spawn(f"edge{i}", args + (["--fast"] if o.fast else []))
        for name, proc in self.procs[1:]:
            ready = self._read_ready(name, proc, "NDSC_EDGE_READY")
            point = f" quality {ready['quality']}" if ready.get("quality") else ""  # as the edge resolved it
            print(f"{name} (pid {proc.pid}) metrics {ready.get('metrics')}{point}", file=out)
        print("Ctrl-C stops every process.", file=out, flush=True)
        if plan.ecg_record:
            from app.demo_ecg import LeadQuality

            self.quality_monitor = LeadQuality(bundle, plan.sources, address, "demo")
        elif plan.stereo:
            from app.demo_stereo import ViewQuality
            from ndsc.sources.images import skimage_pair

            self.quality_monitor = ViewQuality(skimage_pair(), address, "demo")
        return metrics

    def _show(self, metrics_url: str, dashboard: Dashboard, t0: float) -> None:
        o, out = self.options, self.out
        tty = hasattr(out, "isatty") and out.isatty()
        while o.duration is None or time.monotonic() - t0 < o.duration:
            time.sleep(o.refresh)
            dashboard.add(scrape(metrics_url), time.monotonic())
            table = dashboard.render_live(time.monotonic() - t0)
            if self.quality_monitor is not None:
                table += "\n" + self.quality_monitor.render()
            if tty:
                out.write("\x1b[H\x1b[J")
            print(table, file=out, flush=True)
            if all(proc.poll() is not None for name, proc in self.procs if name.startswith("edge")):
                print("every edge node has finished its source", file=out)
                self.edges_ended = True
                break

    def _stop(self, group: list[tuple[str, subprocess.Popen]], timeout: float = 15.0) -> bool:
        """SIGTERM each process of ``group`` and wait up to ``timeout`` s for all; False if one failed or
        had to be killed.

        Failures are told once per distinct error, so four edges failing alike make one line.
        """
        failures: dict[str, list[str]] = {}
        for _, p in group:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in group:
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
                failures.setdefault(f"did not stop within {timeout:g} s: killed", []).append(name)
            else:
                if rc != 0:
                    why = _last_log_line(self.work_dir / f"{name}.log")
                    failures.setdefault(f"exited with {rc}: {why}", []).append(name)
            if p.stdout:
                p.stdout.close()
        for why, names in failures.items():
            told = [n for n in names if n not in self.reported]
            if told:
                self.reported.update(told)
                print(f"ndsc demo: {', '.join(told)} {why} (logs kept in {self.work_dir})", file=self.err)
        return not failures

    def _stop_all(self, metrics_url: str, dashboard: Dashboard, t0: float) -> int:
        """Edges first (they send what they hold), the run's totals, then the decoder (it drains)."""
        edges = [(n, p) for n, p in self.procs if n != "decoder"]
        decoder = [(n, p) for n, p in self.procs if n == "decoder"]
        clean = self._stop(edges)
        if metrics_url and decoder and decoder[0][1].poll() is None:
            try:
                dashboard.add(scrape(metrics_url), time.monotonic())
            except OSError:
                pass  # the decoder went away: the totals stop at the last scrape
        if dashboard.scrapes:
            totals = dashboard.render_totals(time.monotonic() - t0)
            if self.quality_monitor is not None:
                totals += "\n" + self.quality_monitor.render()
            print(totals, file=self.out)
        # the decoder decodes its queue for DECODER_DRAIN_BUDGET s, then finishes the frame in flight and exits
        clean = self._stop(decoder, _DECODER_DRAIN_SECONDS) and clean
        print(f"stopped {len(self.procs)} processes" + (" cleanly" if clean else ""), file=self.out, flush=True)
        if clean and self.edges_ended and dashboard.scrapes and not dashboard.totals().windows:
            # The nodes ran out of input without one window decoded: say why instead of a clean exit.
            log = self.work_dir / "edge0.log"
            self.reported.add("edge0")
            print(f"ndsc demo: the edge nodes ended without a window decoded: {_last_log_line(log)}; "
                  f"fix their source (logs kept in {self.work_dir})", file=self.err)
            return 1
        return 0 if clean else 1

    def _clean_up(self, code: int) -> None:
        """Remove the temporary folder, unless a process failed (its error line names its log)."""
        if self.temporary and self.work_dir is not None and code == 0 and not self.reported:
            shutil.rmtree(self.work_dir, ignore_errors=True)
