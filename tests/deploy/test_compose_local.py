"""What ``docker compose up`` would run, run for real on loopback.

Every compose service built from an ndsc image (the decoder and each edge node) is
started as a local process with its image ENTRYPOINT + compose command and its
image ENV + compose environment, hostnames and ports rewritten to 127.0.0.1 and
free ports, in dependency order, each dependency first passing its compose
healthcheck (``depends_on: condition: service_healthy``). Then: frames decoded per
node (from the decoder's metrics), the Grafana dashboard's queries checked against
live scrapes and evaluated by a real Prometheus using the compose Prometheus config,
and a clean SIGTERM shutdown as ``docker compose down`` would send.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import (COMPOSE, DEPLOY, HEALTHCHECK, LocalStack, exported_names,
                                   free_port, load_compose, require_tool, samples, scrape)

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "ndsc.json"
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
MIN_WINDOWS = 3  # ECG windows are ~1 s at the real-time pace compose runs


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("compose")
    local = LocalStack.from_compose(load_compose(COMPOSE), workdir)
    try:
        local.start(workdir)
        yield local
    finally:
        local.stop()


def _edges(stack: LocalStack) -> list[str]:
    return [n for n, s in stack.services.items() if s.argv[-1] == "edge"]


def _decoder(stack: LocalStack) -> str:
    (name,) = [n for n, s in stack.services.items() if s.argv[-1] == "decoder"]
    return name


def _accepted(stack: LocalStack) -> tuple[dict[str, float], float]:
    values = samples(scrape(stack.metrics_url(_decoder(stack))))
    frames = {dict(labels)["node"]: v for (name, labels), v in values.items()
              if name == "ndsc_frames_total" and dict(labels)["status"] == "accepted"}
    recon = sum(v for (name, _), v in values.items() if name == "ndsc_reconstructions_total")
    return frames, recon


def test_every_edge_container_streams_frames_that_the_decoder_decodes(stack):
    edges = _edges(stack)
    assert len(edges) >= 4
    nodes = {stack.services[e].env["NDSC_NODE_ID"] for e in edges}
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        frames, recon = _accepted(stack)
        if set(frames) == nodes and min(frames.values()) >= MIN_WINDOWS and recon >= MIN_WINDOWS:
            break
        time.sleep(0.5)
    assert set(frames) == nodes, f"decoder accepted frames from {frames}, expected every node {nodes}"
    assert min(frames.values()) >= MIN_WINDOWS and recon >= MIN_WINDOWS, (frames, recon)

    values = samples(scrape(stack.metrics_url(_decoder(stack))))
    assert not [k for k in values if k[0] == "ndsc_streams_rejected_total"], "a node was refused"
    groups = {dict(l)["group"] for (n, l) in values if n == "ndsc_reconstructions_total"}
    assert groups == {stack.services[e].env["NDSC_GROUP"] for e in edges}
    total_payload = 0.0
    for edge in edges:
        own = samples(scrape(stack.metrics_url(edge)))
        sent = sum(v for (n, _), v in own.items() if n == "ndsc_edge_frames_total")
        total_payload += sum(v for (n, _), v in own.items() if n == "ndsc_edge_payload_bytes_total")
        assert sent >= MIN_WINDOWS, f"{edge}: {sent} frames"
    # Every node sends a frame per window; a node whose leads the others determine (aVR, aVL, aVF in
    # ecg-12lead) may send empty payloads, but the group as a whole sends bytes.
    assert total_payload > 0


def test_compose_runs_with_per_node_tokens_generated_at_first_start(stack):
    import grpc

    from ndsc.wire import TOKEN_METADATA_KEY, pb, pb_grpc

    decoder = stack.services[_decoder(stack)]
    tokens_file = Path(decoder.env["NDSC_TOKENS_FILE"])
    assert tokens_file.is_file() and tokens_file.stat().st_mode & 0o077 == 0  # owner-only
    edges = {stack.services[e].env["NDSC_SOURCE_INDEX"]: stack.services[e].env for e in _edges(stack)}
    secrets = {i: Path(env["NDSC_TOKEN_FILE"]).read_text().strip() for i, env in edges.items()}
    assert len(set(secrets.values())) == len(edges)  # one secret per node, never shared
    assert all(s not in tokens_file.read_text() for s in secrets.values())  # the decoder keeps digests only
    reader = (tokens_file.parent / "reader.token").read_text().strip()
    address = f"127.0.0.1:{stack.ports[(_decoder(stack), 50051)]}"
    group = edges["0"]["NDSC_GROUP"]

    def bearer(token: str) -> tuple:
        return ((TOKEN_METADATA_KEY, f"Bearer {token}"),)

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.FusionDecoderStub(channel)
        with pytest.raises(grpc.RpcError) as open_call:
            stub.GetModelInfo(pb.ModelInfoRequest(), timeout=10)
        assert open_call.value.code() == grpc.StatusCode.UNAUTHENTICATED  # not open
        assert stub.GetModelInfo(pb.ModelInfoRequest(), metadata=bearer(secrets["0"]), timeout=10).bundle_id
        stolen = pb.UplinkMessage(header=pb.StreamHeader(group=group, node_id=edges["1"]["NDSC_NODE_ID"],
                                                         source_index=1, incarnation=7))
        with pytest.raises(grpc.RpcError) as other_source:  # edge-0's secret cannot stream edge-1's source
            list(stub.Uplink(iter([stolen]), metadata=bearer(secrets["0"]), timeout=10))
        assert other_source.value.code() == grpc.StatusCode.PERMISSION_DENIED
        first = next(iter(stub.Subscribe(pb.SubscribeRequest(group=group), metadata=bearer(reader), timeout=30)))
        assert first.group == group  # the reader token subscribes


def test_the_compose_healthchecks_pass_on_live_services_and_fail_on_dead_ones(stack):
    for svc in stack.services.values():
        assert svc.healthy(), svc.name
    dead = {**stack.services[_decoder(stack)].env, "NDSC_LISTEN": f"127.0.0.1:{free_port()}"}
    run = subprocess.run([sys.executable, str(HEALTHCHECK), "decoder"], env={"PATH": "/usr/bin:/bin", **dead},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "grpc health" in run.stderr


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _exprs(dash: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def test_dashboard_is_provisioned_and_shows_the_required_views():
    dash = _dashboard()
    uid = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]["uid"]
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for view in ("uplink per node", "total rate vs raw", "bits per sample", "latency percentiles", "distortion",
                 "frame errors"):
        assert view in titles, view
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == uid and panel["targets"], panel["title"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_every_dashboard_query_names_a_metric_the_services_export(stack):
    exported: set[str] = set()
    for name in stack.services:
        exported |= exported_names(scrape(stack.metrics_url(name)))
    dash = _dashboard()
    queries = _exprs(dash) + [("variable", v["definition"]) for v in dash["templating"]["list"]]
    for title, expr in queries:
        names = set(re.findall(r"\bndsc_[a-z0-9_]+", expr))
        assert names, f"{title}: {expr} names no ndsc metric"
        assert names <= exported, f"{title}: {sorted(names - exported)} not exported by decoder or edges"


def _prometheus_config(stack: LocalStack) -> dict:
    """The compose Prometheus config, targets mapped to the local processes, 1 s scrapes."""
    cfg = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    cfg["global"]["scrape_interval"] = "1s"
    for job in cfg["scrape_configs"]:
        for sc in job["static_configs"]:
            mapped = []
            for target in sc["targets"]:
                host, port = target.rsplit(":", 1)
                mapped.append(f"127.0.0.1:{stack.ports[(host, int(port))]}")
            sc["targets"] = mapped
    return cfg


def _query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def test_prometheus_scrapes_every_service_and_evaluates_every_dashboard_query(stack, tmp_path):
    prometheus = require_tool("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(_prometheus_config(stack)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
    try:
        expected_up = len(stack.services)
        deadline = time.monotonic() + 40
        result = []
        while time.monotonic() < deadline:
            try:
                result = _query(base, "sum_over_time(up[1m]) >= 3")["data"]["result"]
            except OSError:
                result = []
            if len(result) == expected_up:
                break
            time.sleep(0.5)
        assert len(result) == expected_up, (result, (tmp_path / "prometheus.log").read_text()[-2000:])

        group = stack.services[_edges(stack)[0]].env["NDSC_GROUP"]
        # Series that must show data while frames flow (errors and distortion may be empty):
        # every query of these panels, and the first query of those.
        all_series = ("Total rate vs raw", "Latency percentiles")
        first_series = ("Uplink per node", "Bits per sample", "Windows reconstructed", "Compression")
        for panel in _dashboard()["panels"]:
            for k, target in enumerate(panel["targets"]):
                title, expr = panel["title"], target["expr"]
                promql = expr.replace("$__rate_interval", "10s").replace("$group", ".*")
                reply = _query(base, promql)
                assert reply["status"] == "success", (title, promql, reply)
                if not (title.startswith(all_series) or (k == 0 and title.startswith(first_series))):
                    continue
                # a ratio of rates is 0/0 until the range holds an increase: windows come every ~2 s
                # and Prometheus may have only a few 1 s scrapes yet, so give the data 20 s to show
                until = time.monotonic() + 20
                while True:
                    values = [float(r["value"][1]) for r in reply["data"]["result"]]
                    if (values and all(math.isfinite(v) and v >= 0 for v in values)) or time.monotonic() > until:
                        break
                    time.sleep(0.5)
                    reply = _query(base, promql)
                assert values and all(math.isfinite(v) and v >= 0 for v in values), (title, promql, reply)
        with urllib.request.urlopen(f"{base}/api/v1/label/group/values?match[]=ndsc_reconstructions_total",
                                    timeout=10) as reply:
            assert json.loads(reply.read())["data"] == [group]  # the dashboard's group variable
    finally:
        proc.terminate()
        proc.wait(20)


def test_compose_down_stops_every_service_cleanly(stack):
    codes = stack.stop()
    assert codes == {name: 0 for name in stack.services}, codes
