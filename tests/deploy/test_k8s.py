"""Kubernetes manifests (kustomize) are schema-valid and Envoy routes groups by consistent hash."""
from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DEPLOY

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"  # pod-index label (>= 1.28) and gRPC probes (GA 1.27) are used


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def resources() -> list[tuple[Path, dict]]:
    """Every object of every file the kustomization lists."""
    out = []
    for name in kustomization()["resources"]:
        path = K8S / name
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in resources() if doc["kind"] == kind]


def envoy_config() -> dict:
    (gen,) = [g for g in kustomization()["configMapGenerator"] if g["name"] == "ndsc-envoy-config"]
    (entry,) = gen["files"]
    key, _, rel = entry.partition("=")
    assert key == "envoy.yaml"
    return yaml.safe_load((K8S / rel).read_text())


def test_kustomization_lists_existing_files_and_known_fields():
    k = kustomization()
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    assert set(k) <= {"apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator", "images"}
    for name in k["resources"]:
        assert (K8S / name).is_file(), name
    images = {i["name"] for i in k["images"]}
    used = {c["image"] for _, d in resources() if d["kind"] in ("Deployment", "StatefulSet")
            for c in d["spec"]["template"]["spec"]["containers"]}
    assert {"ndsc-decoder", "ndsc-edge"} <= used and images <= used


def test_every_manifest_is_valid_against_the_kubernetes_schema():
    import kubernetes_validate

    docs = resources()
    assert {d["kind"] for _, d in docs} >= {"Namespace", "Deployment", "Service", "StatefulSet"}
    for path, doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_a_broken_manifest():
    import kubernetes_validate

    (decoder,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "ndsc-decoder"]
    broken = copy.deepcopy(decoder)
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc-port"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _env_names(settings_cls) -> set[str]:
    return {f.metadata["env"] for f in dataclasses.fields(settings_cls)}


def test_workloads_set_only_real_ndsc_settings():
    from edge_encoder.settings import EdgeSettings
    from fusion_decoder.settings import DecoderSettings

    known = {"ndsc-decoder": _env_names(DecoderSettings), "ndsc-edge": _env_names(EdgeSettings)}
    seen = set()
    for doc in by_kind("Deployment") + by_kind("StatefulSet"):
        app = doc["metadata"]["labels"]["app.kubernetes.io/name"]
        for c in doc["spec"]["template"]["spec"]["containers"]:
            names = {e["name"] for e in c.get("env", []) if e["name"].startswith("NDSC_")}
            if app in known:
                assert names <= known[app], f"{doc['metadata']['name']}: unknown settings {names - known[app]}"
                seen.add(app)
    assert seen == set(known)


def test_edge_workloads_cover_every_source_and_dial_envoy():
    edges = by_kind("StatefulSet")
    assert len(edges) >= 4
    indexes, groups = set(), set()
    for sts in edges:
        (c,) = sts["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        indexes.add(int(env["NDSC_SOURCE_INDEX"]))
        groups.add(env["NDSC_GROUP"])
        host, _, port = env["NDSC_DECODER"].partition(":")
        (svc,) = [s for s in by_kind("Service") if s["metadata"]["name"] == host]
        assert svc["spec"]["selector"]["app.kubernetes.io/name"] == "ndsc-envoy"
        assert int(port) in {p["port"] for p in svc["spec"]["ports"]}
        assert env["NDSC_METRICS_ADDR"] == "0.0.0.0"
    assert indexes == set(range(len(edges)))
    # pod k of every StatefulSet is in group k: one group spans all lead groups
    assert groups == {"group-$(POD_INDEX)"}


def test_envoy_routes_every_group_to_one_decoder_replica_by_consistent_hash():
    from ndsc.wire import GROUP_METADATA_KEY, SERVICE_NAME

    cfg = envoy_config()
    listeners = {l["name"]: l for l in cfg["static_resources"]["listeners"]}
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    hcm = listeners["grpc_ingress"]["filter_chains"][0]["filters"][0]
    assert hcm["name"] == "envoy.filters.network.http_connection_manager"
    typed = hcm["typed_config"]
    assert typed["@type"].endswith("http_connection_manager.v3.HttpConnectionManager")
    assert typed["http_filters"][-1]["name"] == "envoy.filters.http.router"
    routes = typed["route_config"]["virtual_hosts"][0]["routes"]
    (ndsc_route,) = [r for r in routes if r["match"].get("prefix") == f"/{SERVICE_NAME}/"]
    (hash_policy,) = ndsc_route["route"]["hash_policy"]
    # the header the edge really sends (ndsc.wire) is the hash key
    assert hash_policy["header"]["header_name"] == GROUP_METADATA_KEY
    assert ndsc_route["route"]["timeout"] == "0s"  # long-lived streams
    for r in routes:
        assert r["route"]["cluster"] in clusters

    decoder = clusters[ndsc_route["route"]["cluster"]]
    assert decoder["lb_policy"] in ("RING_HASH", "MAGLEV")
    assert decoder["type"] == "STRICT_DNS"
    http2 = decoder["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http2["explicit_http_config"]
    assert "grpc_health_check" in decoder["health_checks"][0]
    (endpoint,) = decoder["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]

    # the endpoint is the decoders' headless Service (one ring host per pod), on the gRPC port
    name, namespace = address["address"].split(".")[:2]
    assert namespace == kustomization()["namespace"]
    (svc,) = [s for s in by_kind("Service") if s["metadata"]["name"] == name]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"]["app.kubernetes.io/name"] == "ndsc-decoder"
    assert address["port_value"] in {p["port"] for p in svc["spec"]["ports"]}
    (deploy,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "ndsc-decoder"]
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    listen = {e["name"]: e["value"] for e in c["env"]}["NDSC_LISTEN"]
    assert int(listen.rsplit(":", 1)[1]) == address["port_value"]

    (envoy,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "ndsc-envoy"]
    (ec,) = envoy["spec"]["template"]["spec"]["containers"]
    ports = {p["containerPort"] for p in ec["ports"]}
    assert {l["address"]["socket_address"]["port_value"] for l in listeners.values()} == ports
    assert cfg["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def _secret_mounts(container: dict, pod: dict) -> dict[str, str]:
    """Mount path → Secret name, for the container's mounts of Secret volumes (checked readable
    by the pod's non-root user: Secret files are root's, group fsGroup, mode defaultMode)."""
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    ctx = pod["securityContext"]
    for v in pod["volumes"]:
        if "secret" in v:
            assert ctx["fsGroup"] == ctx["runAsGroup"] and v["secret"]["defaultMode"] & 0o040, v
    return {m["mountPath"]: secrets[m["name"]] for m in container.get("volumeMounts", []) if m["name"] in secrets}


def test_every_workload_reads_per_node_credentials_from_the_documented_secrets(tmp_path):
    """Run SCALING.md's ``ndsc tokens`` and ``kubectl create secret`` lines (the latter as files),
    then check that the decoder's tokens file and every edge pod's token file are keys of those
    Secrets, and that each pod's token is bound to its own group, node and source."""
    import re
    import shlex
    import sys

    from fusion_decoder.auth import TokenBook

    doc = (K8S / "SCALING.md").read_text()
    (generate,) = re.findall(r"^ndsc tokens .*$", doc, re.M)
    run = subprocess.run(["bash", "-c", generate.replace("ndsc ", f"{shlex.quote(sys.executable)} -m ndsc ", 1)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(K8S.parents[1])})
    assert run.returncode == 0, run.stderr
    secrets: dict[str, dict[str, Path]] = {}  # Secret name → key → file, as kubectl --from-file makes them
    for line in re.findall(r"^kubectl .*create secret generic .*$", doc, re.M):
        args = shlex.split(line)
        name = args[args.index("generic") + 1]
        source = tmp_path / next(a.split("=", 1)[1] for a in args if a.startswith("--from-file="))
        files = sorted(source.iterdir()) if source.is_dir() else [source]
        secrets[name] = {f.name: f for f in files if f.is_file()}
    groups = sorted({int(g) for g in re.findall(r"group-(\d+)__", " ".join(
        k for keys in secrets.values() for k in keys))})
    assert groups == list(range(8)), groups  # the documented command covers group-0..7

    (decoder,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "ndsc-decoder"]
    pod = decoder["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    path = Path({e["name"]: e.get("value") for e in c["env"]}["NDSC_TOKENS_FILE"])
    book = TokenBook.load(secrets[_secret_mounts(c, pod)[str(path.parent)]][path.name])
    for sts in by_kind("StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        path = Path(env["NDSC_TOKEN_FILE"])
        keys = secrets[_secret_mounts(c, pod)[str(path.parent)]]
        for k in groups:  # pod ordinal k is in group-k
            token = keys[path.name.replace("$(POD_INDEX)", str(k))].read_text().strip()
            group = env["NDSC_GROUP"].replace("$(POD_INDEX)", str(k))
            book.check_node(group, env["NDSC_NODE_ID"], int(env["NDSC_SOURCE_INDEX"]),
                            [("authorization", f"Bearer {token}")])


def test_an_edge_container_sends_its_group_in_the_header_envoy_hashes(tmp_path):
    """Run compose's edge-0 command against a loopback gRPC server that records the call."""
    from concurrent import futures

    import grpc

    from fusion_decoder.tokens import ensure_tokens, parse_specs
    from ndsc.wire import GROUP_METADATA_KEY, SERVICE_NAME, TOKEN_METADATA_KEY
    from tests.deploy.conftest import COMPOSE, LocalStack, load_compose

    seen: list[dict[str, str]] = []

    def uplink(request_iterator, context):
        seen.append(dict(context.invocation_metadata()))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "recorded; refusing so the node exits")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE_NAME, {"Uplink": grpc.stream_stream_rpc_method_handler(uplink)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        stack = LocalStack.from_compose(load_compose(COMPOSE), tmp_path)
        edge = next(s for s in stack.services.values() if s.argv[-1] == "edge")
        decoder = next(s for s in stack.services.values() if s.argv[-1] == "decoder")
        # the credentials compose's decoder makes at its first start, in the shared volume
        credentials = parse_specs([decoder.env["NDSC_TOKENS_GENERATE"]])
        ensure_tokens(Path(decoder.env["NDSC_TOKENS_FILE"]).parent, credentials, decoder.env["NDSC_TOKENS_FILE"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("NDSC_")}
        env.update(edge.env, NDSC_DECODER=f"127.0.0.1:{port}", NDSC_METRICS_PORT="-1")
        run = subprocess.run(edge.argv, env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.stop(0)
    assert run.returncode == 3, run.stdout + run.stderr  # refused: the node stops, as it should
    assert seen and seen[0].get(GROUP_METADATA_KEY) == edge.env["NDSC_GROUP"], seen
    token = Path(edge.env["NDSC_TOKEN_FILE"]).read_text().strip()
    assert seen[0].get(TOKEN_METADATA_KEY) == f"Bearer {token}"  # and its own credential
