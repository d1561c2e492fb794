"""Quality points through the live path: one variable-rate bundle, each node at its own point.

Real EdgeNodes and a real grpc.aio decoder on loopback: reconstructions at two points equal
the offline evaluation at those points (``evaluate_bundle(..., quality=q)``, what
``ndsc ecg-eval --quality`` prints); a group whose nodes use different points, a node that
reconnects at another point and frames held in the journal across a restart each decode
at their own stream's point. An unknown point is refused at both ends with a message that
names the bundle's points: the decoder with INVALID_ARGUMENT (counted as
``unknown_quality``), ``ndsc edge`` / ``ndsc demo`` with exit code 2 before connecting.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys

import grpc
import numpy as np
import pytest

from ndsc.wire import FrameData, crc32, pack_batch, pb, pb_grpc
from tests.conftest import REPO
from tests.serving.conftest import Subscription, edge_node, raw_uplink, running_decoder, x_hat_by_window

POINTS = ["1", "2", "3"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
T0 = 1_700_000_000_000_000  # a capture time, µs


@pytest.fixture(scope="module")
def record_windows(variable_rate_ecg_bundle) -> np.ndarray:
    """The pydicom record as the nodes' ``dicom:pydicom`` sources read it: (n, 4, 3, 1024) mV."""
    from ndsc.bundle import load_bundle
    from training.ecg_eval import record_windows as windows_of

    bundle = load_bundle(variable_rate_ecg_bundle)
    leads = [lead for s in bundle.sources for lead in s.channel_names]
    return windows_of("pydicom", leads, 3, 500.0, 1024)


def offline(bundle_path, windows: np.ndarray, qualities: list[list[str]]) -> tuple[list[list[bytes]], np.ndarray]:
    """Payloads and reconstructions of ``windows`` with source i of window w coded at ``qualities[w][i]``."""
    from edge_encoder.encoder import EdgeEncoder
    from fusion_decoder.runtime import JointDecoderRuntime
    from ndsc.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    encoders = {(i, q): EdgeEncoder(bundle, i, quality=q) for row in qualities for i, q in enumerate(row)}
    payloads = [[encoders[i, q].encode(windows[w, i]) for i, q in enumerate(row)] for w, row in enumerate(qualities)]
    x_hat, _ = JointDecoderRuntime(bundle, device="cpu").decode_batch(payloads, qualities=qualities)
    return payloads, x_hat


def header(bundle, source: int, quality: str, node: str | None = None, group: str = "g",
           incarnation: int = 7) -> pb.UplinkMessage:
    info = bundle.sources[source]
    return pb.UplinkMessage(header=pb.StreamHeader(
        group=group, node_id=node or f"node{source}", source_index=source, bundle_id=bundle.bundle_id,
        input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=incarnation,
        quality=quality))


def frames(payloads: list[bytes], first_seq: int = 1, first_window: int = 0) -> pb.UplinkMessage:
    return pb.UplinkMessage(batch=pack_batch(
        [FrameData(first_seq + k, first_window + k, T0 + k, crc32(p), p) for k, p in enumerate(payloads)]))


def test_nodes_at_two_quality_points_decode_live_exactly_like_offline_evaluation(
        variable_rate_ecg_bundle, record_windows, one_torch_thread):
    """Groups q1 and q3 stream every node at point 1 and 3; in group "mixed" nodes 0-1 name point 1
    and nodes 2-3 name none (the default, 2). Everything is scraped from a real /metrics endpoint."""
    from prometheus_client import start_http_server

    from app.demo import scrape
    from training.evaluate import evaluate_bundle

    path, windows = variable_rate_ecg_bundle, record_windows
    n = len(windows)
    plan = {"q1": ["1"] * 4, "q3": ["3"] * 4, "mixed": ["1", "1", None, None]}

    async def scenario():
        async with running_decoder(path, deadline=30.0) as (server, address, registry):
            httpd, _ = start_http_server(0, "127.0.0.1", registry=registry)
            sub = Subscription(address)
            await sub.wait_started(registry)
            nodes = [edge_node(path, i, address, source="dicom:pydicom", group=g, quality=q)
                     for g, qs in plan.items() for i, q in enumerate(qs)]
            counts = await asyncio.gather(*(node.run() for node in nodes))
            async with grpc.aio.insecure_channel(address) as channel:
                info = await pb_grpc.FusionDecoderStub(channel).GetModelInfo(pb.ModelInfoRequest())
            metrics = scrape(f"http://127.0.0.1:{httpd.server_port}/metrics")
            httpd.shutdown()
        return counts, await sub.finish(), nodes, info, metrics

    counts, items, nodes, info, metrics = asyncio.run(scenario())
    assert counts == [n] * 12
    assert [node.encoder.quality for node in nodes[8:]] == ["1", "1", "2", "2"]  # the header names the point used
    assert all(list(s.quality_points) == POINTS and s.default_quality == "2" for s in info.sources)

    at = {q: evaluate_bundle(path, windows=windows, quality=q) for q in ("1", "3")}
    assert at["1"]["quality"] == "1" and at["3"]["quality"] == "3"
    # the points really differ, so a decoder that ignored the header could not match both
    assert at["1"]["payload_bytes"] < at["3"]["payload_bytes"]
    assert at["1"]["sources"][0]["prdn_percent"] > at["3"]["sources"][0]["prdn_percent"]
    mixed_payloads, mixed_x_hat = offline(path, windows, [["1", "1", "2", "2"]] * n)
    expected = {"q1": (at["1"]["payloads"], at["1"]["x_hat"]), "q3": (at["3"]["payloads"], at["3"]["x_hat"]),
                "mixed": (mixed_payloads, mixed_x_hat)}
    for group, (payloads, x_hat) in expected.items():
        got = [r for r in items if r.group == group]
        assert sorted(r.window for r in got) == list(range(n)), group  # every window decoded once
        by_window = x_hat_by_window(got)
        for r in got:
            assert list(r.present) == [True] * 4
            assert list(r.payload_bytes) == [len(p) for p in payloads[r.window]], group
            np.testing.assert_allclose(by_window[r.window], x_hat[r.window], rtol=0, atol=1e-4, err_msg=group)

    def sample(name, group, source, quality):
        key = (name, tuple(sorted({"group": group, "source": str(source), "quality": quality}.items())))
        return metrics.get(key)

    for group, qs in plan.items():
        payloads = expected[group][0]
        for i, q in enumerate(qs):
            point = q or "2"
            assert sample("ndsc_quality_windows_total", group, i, point) == n
            assert sample("ndsc_quality_payload_bytes_total", group, i, point) == sum(len(p[i]) for p in payloads)
    assert sample("ndsc_quality_windows_total", "q1", 0, "3") is None  # no series for a point nobody used


def test_a_node_that_reconnects_at_another_point_codes_its_new_frames_at_that_point(
        variable_rate_ecg_bundle, record_windows):
    """Same node process (incarnation): window 0 on a stream at point 1, window 1 on a new stream
    at point 3; the other nodes stay at the default. Each window decodes at its own points."""
    from ndsc.bundle import load_bundle

    path = variable_rate_ecg_bundle
    bundle = load_bundle(path)
    qualities = [["1", "2", "2", "2"], ["3", "2", "2", "2"]]
    payloads, x_hat = offline(path, record_windows[:2], qualities)

    async def scenario():
        async with running_decoder(path) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            first = await raw_uplink(address, [header(bundle, 0, "1"), frames([payloads[0][0]])])
            second = await raw_uplink(address, [header(bundle, 0, "3"), frames([payloads[1][0]], 2, 1)])
            for i in (1, 2, 3):
                await raw_uplink(address, [header(bundle, i, ""), frames([payloads[0][i], payloads[1][i]])])
        return first, second, await sub.finish(), registry

    first, second, items, registry = asyncio.run(scenario())
    assert first[:2] == ([0, 1], grpc.StatusCode.OK) and second[:2] == ([1, 2], grpc.StatusCode.OK)
    by_window = x_hat_by_window(items)
    assert sorted(by_window) == [0, 1] and all(list(r.present) == [True] * 4 for r in items)
    for w in (0, 1):
        np.testing.assert_allclose(by_window[w], x_hat[w], rtol=0, atol=1e-4)
    assert registry.get_sample_value("ndsc_quality_windows_total", {"group": "g", "source": "0", "quality": "1"}) == 1
    assert registry.get_sample_value("ndsc_quality_windows_total", {"group": "g", "source": "0", "quality": "3"}) == 1


def test_frames_held_in_the_journal_decode_at_their_point_after_a_restart(
        variable_rate_ecg_bundle, record_windows, tmp_path):
    """Nodes 0-2 were acknowledged at point 1 before the decoder died; node 3 sends at point 3 after."""
    from fusion_decoder.journal import Journal, SessionRow
    from ndsc.bundle import load_bundle

    path = variable_rate_ecg_bundle
    bundle = load_bundle(path)
    payloads, x_hat = offline(path, record_windows[:1], [["1", "1", "1", "3"]])
    journal = Journal(tmp_path / "state")  # what the first decoder process committed before its Acks
    for i in range(3):
        journal.record_frames(SessionRow("g", f"node{i}", i, 7, 1, 0), i,
                              [FrameData(1, 0, T0, crc32(payloads[0][i]), payloads[0][i])], (), "1")
    journal.close()

    async def scenario():
        async with running_decoder(path, state_dir=str(tmp_path / "state")) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            sent = await raw_uplink(address, [header(bundle, 3, "3"), frames([payloads[0][3]])])
        return sent, await sub.finish(), registry

    sent, items, registry = asyncio.run(scenario())
    assert sent[1] == grpc.StatusCode.OK and registry.get_sample_value("ndsc_journal_restored_frames_total") == 3
    (r,) = items
    assert list(r.present) == [True] * 4
    np.testing.assert_allclose(x_hat_by_window(items)[0], x_hat[0], rtol=0, atol=1e-4)


def test_a_journal_from_before_quality_points_is_upgraded_in_place(tmp_path):
    """Held frames of a journal without the quality column keep their data and decode at the default."""
    from fusion_decoder.journal import Journal

    (tmp_path / "state").mkdir()
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite")
    db.executescript("""
        CREATE TABLE frames (grp TEXT NOT NULL, window INTEGER NOT NULL, source INTEGER NOT NULL,
            capture_us INTEGER NOT NULL, payload BLOB NOT NULL, chunk INTEGER NOT NULL DEFAULT 0,
            chunks INTEGER NOT NULL DEFAULT 1, shape TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (grp, window, source, chunk));
        INSERT INTO frames VALUES ('g', 4, 1, 123, x'0102', 0, 1, '3,1024');""")
    db.commit()
    db.close()
    journal = Journal(tmp_path / "state")
    try:
        (held,) = journal.held_frames()
    finally:
        journal.close()
    assert (held.group, held.window, held.source, held.payload, held.shape, held.quality) == \
        ("g", 4, 1, b"\x01\x02", (3, 1024), "")


def test_an_unknown_quality_point_is_refused_with_a_counted_reason(variable_rate_ecg_bundle, record_windows):
    from ndsc.bundle import load_bundle

    bundle = load_bundle(variable_rate_ecg_bundle)
    payloads, _ = offline(variable_rate_ecg_bundle, record_windows[:1], [["2"] * 4])

    async def scenario():
        async with running_decoder(variable_rate_ecg_bundle) as (server, address, registry):
            # the header alone, as an edge waits for the first Ack before it sends frames
            refused = await raw_uplink(address, [header(bundle, 0, "99")])
            accepted = await raw_uplink(address, [header(bundle, 0, "2"), frames([payloads[0][0]])])
        return refused, accepted, registry

    (acks, code, details), accepted, registry = asyncio.run(scenario())
    assert acks == [] and code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown quality point '99'" in details and "1, 2, 3" in details
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "unknown_quality"}) == 1
    assert accepted[:2] == ([0, 1], grpc.StatusCode.OK)  # the same node at a known point is served


@pytest.mark.parametrize("how", ["flag", "env"])
def test_ndsc_edge_with_an_unknown_quality_exits_2_naming_the_known_points(variable_rate_ecg_bundle, how):
    # port 9: nothing listens there; the node must fail before it ever connects
    args = [sys.executable, "-m", "ndsc", "edge", "--bundle", str(variable_rate_ecg_bundle),
            "--decoder", "127.0.0.1:9", "--metrics-port", "-1"]
    env = dict(ENV)
    if how == "flag":
        args += ["--quality", "99"]
    else:
        env["NDSC_QUALITY"] = "99"
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "unknown quality point '99'" in lines[0] and "choose one of 1, 2, 3" in lines[0]
    assert "NDSC_EDGE_READY" not in out.stdout


def test_ndsc_demo_runs_every_edge_at_the_chosen_point_and_refuses_an_unknown_one(
        variable_rate_ecg_bundle, tmp_path):
    bad = subprocess.run([sys.executable, "-m", "ndsc", "demo", "--bundle", str(variable_rate_ecg_bundle),
                          "--quality", "7", "--work-dir", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=60, cwd=REPO, env=ENV)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "unknown quality point '7'" in bad.stderr and "1, 2, 3" in bad.stderr
    assert not (tmp_path / "bad" / "decoder.log").exists()  # refused before starting any process

    out = subprocess.run([sys.executable, "-m", "ndsc", "demo", "--bundle", str(variable_rate_ecg_bundle),
                          "--quality", "1", "--source", "dicom:pydicom", "--fast", "--duration", "60",
                          "--work-dir", str(tmp_path / "good")],
                         capture_output=True, text=True, timeout=180, cwd=REPO, env=ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every edge node has finished its source" in out.stdout  # 4 windows each, then a clean stop
    assert "4 nodes at quality 1 (points 1, 2, 3)" in out.stdout
    assert sorted(line.split()[0] for line in out.stdout.splitlines() if line.endswith("quality 1")) == \
        ["edge0", "edge1", "edge2", "edge3"]  # each edge process reported the point it codes at


def test_ecg_eval_codes_at_the_point_asked_for_and_prints_it(variable_rate_ecg_bundle, record_windows, capsys):
    import json

    from app.cli import main
    from training.evaluate import evaluate_bundle

    main(["ecg-eval", str(variable_rate_ecg_bundle), "pydicom", "--quality", "3", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert r["quality"] == "3"
    assert r["payload_bytes"] == evaluate_bundle(variable_rate_ecg_bundle, windows=record_windows,
                                                 quality="3")["payload_bytes"]
    main(["ecg-eval", str(variable_rate_ecg_bundle), "pydicom", "--json"])
    assert json.loads(capsys.readouterr().out)["quality"] == "2"  # the bundle's default
    assert main(["ecg-eval", str(variable_rate_ecg_bundle), "pydicom", "--quality", "3"]) == 0
    assert "quality point 3 (of 1, 2, 3; default 2)" in capsys.readouterr().out
    assert main(["ecg-eval", str(variable_rate_ecg_bundle), "pydicom", "--quality", "9"]) == 2
    assert "choose one of 1, 2, 3" in capsys.readouterr().err
