#!/usr/bin/env python
"""Load test: ≥ 100 simulated edge nodes in many groups → one decoder, on loopback.

Each simulated node is one real ``Uplink`` stream (grpc.aio, one client process) that
sends real coded payloads (the bundle's edge encoders, computed once) at ``--rate``
windows/s for ``--duration`` s, one frame per message (the worst case for overhead).
The decoder is a real ``ndsc decoder`` process (optionally with ``--state-dir``, the
journal). Reported, measured in this run:

* frames/s accepted (sum over nodes) and reconstructions/s;
* capture → reconstruction latency p50/p99 per window (Subscribe stream's times);
* send → Ack latency p99 (what a node waits for its durability promise);
* decoder RSS before the load, halfway and at the end (growth, and growth in the second half,
  which separates warm-up from a leak);
* lost frames: frames sent and never acknowledged, and windows never (or twice) reconstructed.

Reconstructions are read with SubscribeBatches (several windows per message) where the decoder
has it and with Subscribe otherwise (``--subscribe single`` forces Subscribe); each run reports
which.

With ``--find-saturation`` it raises the per-node rate by ``--step`` until the decoder stops
keeping up (a node's frames acknowledged later than 10 % + 1 s past their schedule, p99
capture → reconstruction over ``--p99-limit``, or anything lost), and reports the last
sustained run (a failed rate is tried ``--retries`` more times; ``--refine`` more rates then
bisect up to the first unsustained one), and runs
each decoder again at half its saturation rate (the p99 latency to plan with). ``--baseline
REV`` runs the same search against a decoder built from git revision REV (``git archive``,
e.g. ``main``) in the same process, run for run in lockstep with this one (the order
alternating), so the two figures come from one machine state; the ratio is printed. Without
``--find-saturation``, ``--baseline`` runs both decoders ``--runs`` times at ``--rate``, alternating, and
prints the medians: at one load the CPU a frame by thread compares more finely than saturation.

Usage::

    python benchmarks/load.py --groups 25 --duration 20 --rate 10         # 100 nodes (4-source bundle)
    python benchmarks/load.py --groups 25 --duration 20 --rate 10 --journal
    python benchmarks/load.py --groups 5 --duration 4 --rate 20 --find-saturation --baseline HEAD~1
    python benchmarks/load.py --groups 5 --duration 4 --rate 170 --baseline HEAD~1 --runs 6  # CPU a frame
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from ndsc.bundle import load_bundle  # noqa: E402
from ndsc.wire import FrameData, crc32, pack_batch, pb, pb_grpc  # noqa: E402


def coded_payloads(bundle_path: Path, n: int = 32) -> list[list[bytes]]:
    """``n`` windows of the bundle's replay source, coded by the real edge encoders: [window][source]."""
    from edge_encoder.encoder import EdgeEncoder
    from ndsc.sources.base import open_source

    bundle = load_bundle(bundle_path)
    rows: list[list[bytes]] = [[] for _ in range(n)]
    for i in range(bundle.n_sources):
        enc = EdgeEncoder(bundle, i)
        source = open_source(bundle.extra["edge_source"], i, enc.info.input_shape)
        for k, w in zip(range(n), source.windows()):
            rows[k].append(enc.encode(w.data))
    return [r for r in rows if len(r) == bundle.n_sources]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of process ``pid``: the main thread as ``main``, the
    others summed by their kernel name (``python`` for Python threads, ``event_engine`` for grpc's)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        name = "main" if int(tid) == pid else stat[stat.index("(") + 1:stat.rindex(")")]
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_us_per_frame(before: dict[str, float], after: dict[str, float], frames: int) -> dict[str, float]:
    per = {k: round((v - before.get(k, 0.0)) / max(frames, 1) * 1e6, 1) for k, v in after.items()}
    return {**{k: v for k, v in per.items() if v >= 0.5}, "total": round(sum(per.values()), 1)}


def _edge_max_batch_frames() -> int:
    """EdgeSettings.max_batch_frames' default: the most frames an EdgeNode puts in one message."""
    import dataclasses

    from edge_encoder.settings import EdgeSettings

    return next(f.default for f in dataclasses.fields(EdgeSettings) if f.name == "max_batch_frames")


_EDGE_MAX_BATCH_FRAMES = _edge_max_batch_frames()


async def _node(address, bundle, group, source, payloads, windows, rate, t0, ack_lat,
                sender="single", flush=0.0) -> tuple[int, int]:
    """One simulated node's stream: returns (the last seq acknowledged, messages written).

    ``flush`` (``edge`` only): seconds a due window waits for later ones to share its message,
    as an EdgeNode with ``NDSC_FLUSH_INTERVAL``."""
    info = bundle.sources[source]
    messages = 0
    sent: dict[int, float] = {}
    last_ack = 0
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.FusionDecoderStub(channel).Uplink()
        await call.write(pb.UplinkMessage(header=pb.StreamHeader(
            group=group, node_id=f"n{source}", source_index=source, bundle_id=bundle.bundle_id,
            input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=1)))
        await call.read()

        async def reader():
            nonlocal last_ack
            while (ack := await call.read()) is not grpc.aio.EOF:
                now = time.perf_counter()
                for s in range(last_ack + 1, ack.last_seq + 1):
                    ack_lat.append(now - sent.pop(s))
                last_ack = max(last_ack, ack.last_seq)

        task = asyncio.create_task(reader())
        wall_t0 = time.time() + (t0 - time.perf_counter())
        k = 0
        while k < windows:
            delay = t0 + k / rate + (flush if sender == "edge" else 0.0) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            # "single": one frame per message whatever the backlog (the worst case for overhead);
            # "edge": every window already due in one message, as EdgeNode sends a backlog
            due = 1 if sender == "single" else min(windows - k, _EDGE_MAX_BATCH_FRAMES,
                                                    int((time.perf_counter() - t0) * rate) - k + 1)
            frames = []
            for j in range(k, k + max(1, due)):
                p = payloads[j % len(payloads)][source]
                sent[j + 1] = time.perf_counter()
                # a backlog's windows carry the time they were due (their capture), not the send time
                captured = time.time() if sender == "single" else wall_t0 + j / rate
                frames.append(FrameData(j + 1, j, int(captured * 1e6), crc32(p), p))
            k += len(frames)
            await call.write(pb.UplinkMessage(batch=pack_batch(frames)))
            messages += 1
        await call.done_writing()
        await task
    return last_ack, messages


async def run_load(bundle_path: Path, address: str, groups: int, duration: float, rate: float,
                   decoder_pid: int | None = None, subscribe: str = "batches", sender: str = "single",
                   flush: float = 0.0) -> dict:
    """Drive ``groups`` × n_sources nodes against the decoder at ``address``; returns the figures.

    ``subscribe``: ``batches`` reads reconstructions with SubscribeBatches (falling back to
    Subscribe on a decoder without it, e.g. a ``--baseline`` revision), ``single`` with Subscribe.
    ``sender``: ``single`` sends one frame per message always; ``edge`` sends every window
    already due in one message (up to 64), as an ``EdgeNode`` sends a backlog; with ``flush`` > 0
    the first due window waits that long for others (``NDSC_FLUSH_INTERVAL``).
    """
    bundle = load_bundle(bundle_path)
    payloads = coded_payloads(bundle_path)
    n_src, windows = bundle.n_sources, max(1, int(duration * rate))
    names = [f"load{g:03d}" for g in range(groups)]
    recs: dict[tuple[str, int], list[float]] = {}
    dups = 0
    channel = grpc.aio.insecure_channel(address)
    stub = pb_grpc.FusionDecoderStub(channel)
    request = pb.SubscribeRequest(include_samples=False)
    used = {"subscribe": subscribe}

    def take(r):
        nonlocal dups
        key = (r.group, r.window)
        dups += key in recs
        captured = max(c for c, p in zip(r.capture_time, r.present) if p)
        recs[key] = [r.reconstructed_time - captured, float(all(r.present))]

    async def collect():
        if subscribe == "batches":
            try:
                async for batch in stub.SubscribeBatches(request):
                    for r in batch.windows:
                        take(r)
                return
            except grpc.aio.AioRpcError as e:  # a decoder from before SubscribeBatches (--baseline)
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                used["subscribe"] = "single"
        async for r in stub.Subscribe(request):
            take(r)

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.5)
    ack_lat: list[float] = []
    rss0 = rss_bytes(decoder_pid) if decoder_pid else 0
    t0 = time.perf_counter() + 0.5
    samples: list[int] = []  # decoder RSS once a second: growth after warm-up tells a leak from warm-up

    async def sample_rss():
        while decoder_pid:
            samples.append(rss_bytes(decoder_pid))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample_rss())
    cpu0 = thread_cpu_seconds(decoder_pid) if decoder_pid else {}
    own0 = time.process_time()
    streams = await asyncio.gather(*(_node(address, bundle, g, i, payloads, windows, rate, t0, ack_lat, sender,
                                        flush)
                                  for g in names for i in range(n_src)))
    acked = sum(a for a, _ in streams)
    acked_elapsed = time.perf_counter() - t0  # the schedule ends at windows / rate
    sampler.cancel()
    sent_done = time.perf_counter()
    want = groups * windows
    while len(recs) < want and time.perf_counter() - sent_done < 30:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    rss1 = rss_bytes(decoder_pid) if decoder_pid else 0
    cpu1 = thread_cpu_seconds(decoder_pid) if decoder_pid else {}
    own = time.process_time() - own0
    collector.cancel()
    await asyncio.gather(collector, return_exceptions=True)
    await channel.close()
    lat = np.array([v[0] for v in recs.values()]) if recs else np.zeros(1)
    frames = len(names) * n_src * windows
    return {
        "nodes": len(names) * n_src, "groups": groups, "windows_per_node": windows, "rate_per_node": rate,
        "frames_sent": frames, "frames_acked": acked, "lost_frames": frames - acked,
        "messages_sent": sum(m for _, m in streams), "sender": sender, "flush_interval_s": flush,
        "windows_reconstructed": len(recs), "windows_expected": want, "duplicate_windows": dups,
        "complete_windows": int(sum(v[1] for v in recs.values())),
        "frames_per_s": round(acked / elapsed, 1), "reconstructions_per_s": round(len(recs) / elapsed, 1),
        "latency_p50_s": round(float(np.percentile(lat, 50)), 4),
        "latency_p99_s": round(float(np.percentile(lat, 99)), 4),
        "ack_latency_p99_s": round(float(np.percentile(ack_lat or [0], 99)), 4),
        "decoder_rss_start_mib": round(rss0 / 2**20, 1), "decoder_rss_end_mib": round(rss1 / 2**20, 1),
        "decoder_rss_growth_mib": round((rss1 - rss0) / 2**20, 1),
        # from the middle of the load to its end: ~0 when memory is bounded (no per-frame leak)
        "decoder_rss_growth_second_half_mib": round((rss1 - samples[len(samples) // 2]) / 2**20, 1) if samples else 0,
        "elapsed_s": round(elapsed, 2), "acked_elapsed_s": round(acked_elapsed, 2),
        "scheduled_s": round(windows / rate, 2), "subscribe": used["subscribe"],
        # where the CPU goes, per frame sent: the decoder's threads (the event loop is "main") and this
        # load generator (every thread of this process, the reconstruction reader included)
        "decoder_cpu_us_per_frame": _cpu_us_per_frame(cpu0, cpu1, frames) if decoder_pid else {},
        "load_generator_cpu_us_per_frame": round(own / max(frames, 1) * 1e6, 1),
    }


def lost_nothing(r: dict) -> bool:
    """Whether a run's every frame was acknowledged and no window reconstructed twice."""
    return r["lost_frames"] == 0 and r["duplicate_windows"] == 0


def sustained(r: dict, p99_limit: float) -> bool:
    """Whether a run kept up: everything acknowledged within 10 % + 1 s of its schedule, every
    window reconstructed once, nothing lost, p99 capture → reconstruction within ``p99_limit``."""
    return (lost_nothing(r)
            and r["windows_reconstructed"] == r["windows_expected"]
            and r["acked_elapsed_s"] <= 1.1 * r["scheduled_s"] + 1.0 and r["latency_p99_s"] <= p99_limit)


def saturation_search(start_rate: float, step: float = 1.5, max_runs: int = 10, p99_limit: float = 1.0,
                      refine: int = 0, retries: int = 0):
    """The search of :func:`find_saturation` as a generator: yields the per-node rate to measure
    next, is sent that run's figures, and returns (last sustained run or None, every run).

    After the first rate that is not sustained, ``refine`` more rates bisect (geometrically)
    between the last sustained rate and it, so the answer is finer than one ``step``. A rate
    whose run is not sustained is tried up to ``retries`` more times and counts as sustained
    when one try is (on a machine shared with other jobs one stall can fail a single run).
    """
    runs: list[dict] = []

    def attempt(rate: float):
        for _ in range(1 + retries):
            r = yield rate
            r["sustained"] = sustained(r, p99_limit)
            runs.append(r)
            if r["sustained"]:
                return r
        return None

    best = None
    rate, failed = start_rate, None
    for _ in range(max_runs):
        r = yield from attempt(rate)
        if r is None:
            failed = rate
            break
        best, rate = r, rate * step
    for _ in range(refine if best is not None and failed is not None else 0):
        rate = (best["rate_per_node"] * failed) ** 0.5
        r = yield from attempt(rate)
        if r is not None:
            best = r
        else:
            failed = rate
    return best, runs


def find_saturation(measure: Callable[[float], dict], start_rate: float, step: float = 1.5, max_runs: int = 10,
                    p99_limit: float = 1.0, refine: int = 0) -> tuple[dict | None, list[dict]]:
    """Raise the per-node rate from ``start_rate`` by ``step`` until a run is not :func:`sustained`.

    ``measure(rate)`` runs the load at that per-node rate and returns its figures. Returns the
    last sustained run (None when even the first was not) and every run, in order.
    """
    return search_together({"": (saturation_search(start_rate, step, max_runs, p99_limit, refine), measure)})[""]


def search_together(searches: dict[str, tuple]) -> dict[str, tuple[dict | None, list[dict]]]:
    """Run several :func:`saturation_search` generators in lockstep, each with its own
    ``measure``: one run of each per round, the order alternating between rounds, so a
    machine whose load drifts (other jobs on the same cores) weighs on every search alike."""
    results: dict[str, tuple] = {}
    pending = {name: (gen, measure, gen.send(None)) for name, (gen, measure) in searches.items()}
    rounds = 0
    while pending:
        names = list(pending)
        for name in names if rounds % 2 == 0 else names[::-1]:
            gen, measure, rate = pending[name]
            try:
                pending[name] = (gen, measure, gen.send(measure(rate)))
            except StopIteration as done:
                results[name] = done.value
                del pending[name]
        rounds += 1
    return results


def compare_at_rate(measure: Callable[[Path, float], dict], codes: dict[str, Path], rate: float,
                    runs: int) -> int:
    """Each decoder in ``codes`` at one ``rate``, ``runs`` times, the order alternating run for run;
    prints every run and the medians of throughput, latency and CPU a frame by thread (at a fixed
    load the CPU a frame compares more finely than a saturation search). Returns 1 if any run
    lost or duplicated frames."""
    keys = ("frames_per_s", "latency_p50_s", "latency_p99_s", "lost_frames", "duplicate_windows",
            "decoder_cpu_us_per_frame", "load_generator_cpu_us_per_frame")
    results: dict[str, list[dict]] = {name: [] for name in codes}
    for r in range(runs):
        for name in (list(codes) if r % 2 == 0 else list(codes)[::-1]):
            results[name].append({k: v for k, v in measure(codes[name], rate).items() if k in keys})
    report: dict = {"rate_per_node": rate, "runs": runs}
    for name, rs in results.items():
        threads = sorted({t for r in rs for t in r["decoder_cpu_us_per_frame"]})
        report[name] = {
            "median": {k: float(np.median([r[k] for r in rs])) for k in ("frames_per_s", "latency_p50_s",
                                                                      "latency_p99_s")},
            "median_decoder_cpu_us_per_frame": {t: float(np.median([r["decoder_cpu_us_per_frame"].get(t, 0.0)
                                                                    for r in rs])) for t in threads},
            "runs": rs}
    print(json.dumps(report, indent=1))
    return 0 if all(lost_nothing(r) for rs in results.values() for r in rs) else 1


def start_decoder(bundle: Path, state_dir: str | None, deadline: float,
                  code: Path = REPO, cpus: set[int] | None = None) -> tuple[subprocess.Popen, str]:
    """A real ``ndsc decoder`` process on a free loopback port, running the code in ``code``
    (on the CPUs in ``cpus`` only, when given)."""
    # ``code`` first; what PYTHONPATH already holds (packages installed beside, e.g. with --target) after it
    path = os.pathsep.join([str(code), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    args = [sys.executable, "-m", "ndsc", "decoder", "--bundle", str(bundle), "--listen", "127.0.0.1:0",
            "--metrics-port", "-1", "--deadline", str(deadline)]
    if state_dir:
        args += ["--state-dir", state_dir]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, cwd=code, preexec_fn=pin)
    for line in proc.stdout:
        if line.startswith("NDSC_DECODER_READY"):
            return proc, dict(p.split("=", 1) for p in line.split()[1:])["grpc"]
    raise RuntimeError(f"decoder exited {proc.wait()}")


def main(argv=None) -> int:
    from fusion_decoder.cli import run_event_loop
    from ndsc.bundles import default_bundle

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=None, help="default: the shipped ecg-synth-quick bundle")
    ap.add_argument("--groups", type=int, default=25)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of sending per node")
    ap.add_argument("--rate", type=float, default=10.0, help="windows/s per node")
    ap.add_argument("--deadline", type=float, default=2.0)
    ap.add_argument("--journal", action="store_true", help="decoder with --state-dir (durable acks)")
    ap.add_argument("--find-saturation", action="store_true", help="raise --rate by --step until the decoder "
                    "stops keeping up; report the last sustained run")
    ap.add_argument("--step", type=float, default=1.5, help="rate factor between saturation runs")
    ap.add_argument("--max-runs", type=int, default=24, help="rates tried at most while raising (a search "
                    "that is still sustained at the last one reports it, flagged capped)")
    ap.add_argument("--p99-limit", type=float, default=1.0, help="seconds of p99 latency a sustained run may have")
    ap.add_argument("--retries", type=int, default=1, help="more tries of a rate whose run was not sustained "
                    "(the rate counts as sustained when one try is)")
    ap.add_argument("--refine", type=int, default=2, help="runs that bisect between the last sustained rate and "
                    "the first that was not")
    ap.add_argument("--subscribe", choices=("batches", "single"), default="batches",
                    help="how the load reads reconstructions: SubscribeBatches (Subscribe on a decoder without it) "
                    "or one Subscribe message per window")
    ap.add_argument("--sender", choices=("single", "edge"), default="single",
                    help="single: one frame per message whatever the backlog (the worst case); edge: a node "
                    "behind its schedule sends every due window in one message, as EdgeNode does")
    ap.add_argument("--flush-interval", type=float, default=0.0, metavar="S",
                    help="with --sender edge: a due window waits S seconds for later ones to share its message, "
                    "as an EdgeNode with NDSC_FLUSH_INTERVAL (adds up to S to the latency)")
    ap.add_argument("--decoder-cpus", metavar="LIST", help="pin the decoder to these CPUs (e.g. 0 or 0,1) and the "
                    "load generator to the others, so the decoder's capacity is measured without the load "
                    "generator taking its cores (default: both share every CPU this process may use)")
    ap.add_argument("--baseline", metavar="REV", help="also search with the decoder of git revision REV, run for "
                    "run in lockstep with this one (or a folder holding that revision's files, for a machine "
                    "without the git history: `git archive REV | tar -x -C DIR`); without --find-saturation, "
                    "--runs runs of each at --rate, alternating")
    ap.add_argument("--runs", type=int, default=4, help="with --baseline and no --find-saturation: runs of each "
                    "decoder at --rate (medians printed)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.flush_interval < 0 or (args.flush_interval > 0 and args.sender != "edge"):
        ap.error("--flush-interval must be >= 0 and needs --sender edge")
    bundle = args.bundle or default_bundle("ecg-synth-quick")
    decoder_cpus = {int(c) for c in args.decoder_cpus.split(",")} if args.decoder_cpus else None
    if decoder_cpus:
        rest = os.sched_getaffinity(0) - decoder_cpus
        if not rest:
            ap.error(f"--decoder-cpus {args.decoder_cpus} leaves no CPU for the load generator")
        os.sched_setaffinity(0, rest)

    def measure(code: Path, rate: float) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            proc, address = start_decoder(bundle, tmp if args.journal else None, args.deadline, code, decoder_cpus)
            try:
                # the load generator shares the cores with the decoder: the cheaper loop leaves it more
                result = run_event_loop(run_load(bundle, address, args.groups, args.duration, rate, proc.pid,
                                                 args.subscribe, args.sender, args.flush_interval))
            finally:
                proc.terminate()
                proc.wait(30)
        # one line a run on stderr: a long search shows its progress, and a search cut short keeps its runs
        print(f"load: {'this' if code == REPO else 'baseline'} at {rate:.1f} windows/s a node: "
              f"{result['frames_per_s']} frames/s, p50 {1e3 * result['latency_p50_s']:.0f} ms, "
              f"p99 {1e3 * result['latency_p99_s']:.0f} ms, lost {result['lost_frames']}, "
              f"decoder CPU {result['decoder_cpu_us_per_frame'].get('total', 0):.0f} us a frame",
              file=sys.stderr, flush=True)
        return result

    if not args.find_saturation and not args.baseline:
        result = measure(REPO, args.rate)
        result["journal"] = args.journal
        print(json.dumps(result, indent=1))
        return 0 if lost_nothing(result) else 1
    codes = {"this": REPO}
    with tempfile.TemporaryDirectory() as old:
        if args.baseline and Path(args.baseline).is_dir():
            codes[f"baseline {args.baseline}"] = Path(args.baseline).resolve()
        elif args.baseline:
            archive = subprocess.run(["git", "archive", args.baseline], cwd=REPO, check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
            codes[f"baseline {args.baseline}"] = Path(old)
        if not args.find_saturation:
            return compare_at_rate(measure, codes, args.rate, args.runs)

        def measuring(code: Path) -> Callable[[float], dict]:
            return lambda rate: measure(code, rate)

        found = search_together({name: (saturation_search(args.rate, args.step, max_runs=args.max_runs,
                                                          p99_limit=args.p99_limit, refine=args.refine,
                                                          retries=args.retries),
                                  measuring(code))
                                 for name, code in codes.items()})
        # each decoder again at half its own saturation: the latency an operator would plan with
        half = {name: measure(codes[name], best["rate_per_node"] / 2) for name, (best, _) in found.items() if best}
    report = {}
    for name, (best, runs) in found.items():
        h = half.get(name)
        report[name] = {"saturation_frames_per_s": best and round(best["nodes"] * best["rate_per_node"], 1),
                        "subscribe": runs[0]["subscribe"],
                        # every rate tried was sustained: the saturation is above the reported figure
                        "capped": all(r["sustained"] for r in runs),
                        "p99_at_saturation_s": best and best["latency_p99_s"],
                        "half_saturation": h and {k: h[k] for k in ("rate_per_node", "frames_per_s", "latency_p50_s",
                                                                  "latency_p99_s", "lost_frames")},
                        "runs": [{k: r[k] for k in ("rate_per_node", "frames_per_s", "latency_p50_s",
                                                      "latency_p99_s", "acked_elapsed_s", "scheduled_s",
                                                      "lost_frames", "sustained", "messages_sent",
                                                      "decoder_cpu_us_per_frame",
                                                      "load_generator_cpu_us_per_frame")} for r in runs]}
    if args.baseline and all(report[n]["saturation_frames_per_s"] for n in report):
        base = report[f"baseline {args.baseline}"]["saturation_frames_per_s"]
        report["saturation_ratio"] = round(report["this"]["saturation_frames_per_s"] / base, 2)
    print(json.dumps({"journal": args.journal, "groups": args.groups, "sender": args.sender,
                      "flush_interval_s": args.flush_interval,
                      "decoder_cpus": sorted(decoder_cpus) if decoder_cpus else "shared", **report}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
