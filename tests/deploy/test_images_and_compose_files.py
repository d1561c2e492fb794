"""The Dockerfiles and compose files, checked without a Docker engine.

Debian's ``docker-compose config`` validates the compose files (main + overrides),
``promtool check config`` the Prometheus config; the rest reads the files and checks
them against the code they configure (settings, CLI, metrics ports).
"""
from __future__ import annotations

import dataclasses
import re
import subprocess

import yaml

from tests.conftest import REPO
from tests.deploy.conftest import (COMPOSE, DEPLOY, Dockerfile, environment, load_compose, ndsc_services,
                                   require_tool)

EDGE_DF = DEPLOY / "Dockerfile.edge"
DECODER_DF = DEPLOY / "Dockerfile.decoder"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
WFDB_ENV = {"NDSC_ECG_DIR": "/records", "NDSC_ECG_RECORD": "E07503"}


def compose_config(*files, env=None) -> subprocess.CompletedProcess:
    tool = require_tool("docker-compose")
    args = [tool]
    for f in files:
        args += ["-f", str(f)]
    return subprocess.run(args + ["config"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_docker_compose_validates_the_compose_file_and_its_overrides():
    main = compose_config(COMPOSE)
    assert main.returncode == 0, main.stderr
    model = yaml.safe_load(main.stdout)
    assert {"decoder", "prometheus", "grafana"} <= set(model["services"])
    gpu = compose_config(COMPOSE, DEPLOY / "compose.gpu.yaml")
    assert gpu.returncode == 0, gpu.stderr
    (device,) = yaml.safe_load(gpu.stdout)["services"]["decoder"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    ecg = compose_config(COMPOSE, DEPLOY / "compose.ecg.yaml", env=WFDB_ENV)
    assert ecg.returncode == 0, ecg.stderr
    # the override without its variables is refused with the reason, not run half-configured
    bare = compose_config(COMPOSE, DEPLOY / "compose.ecg.yaml")
    assert bare.returncode != 0 and "NDSC_ECG_DIR" in bare.stderr


def test_docker_compose_config_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "compose.yaml"
    model = yaml.safe_load(COMPOSE.read_text())
    model["services"]["edge-0"]["depends_on"] = {"no-such-service": {"condition": "service_healthy"}}
    broken.write_text(yaml.safe_dump(model))
    assert compose_config(broken).returncode != 0


def test_promtool_validates_the_prometheus_config():
    promtool = require_tool("promtool")
    run = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_prometheus_scrapes_the_decoder_and_every_edge_on_their_metrics_ports():
    model = load_compose(COMPOSE)
    expected = set()
    for name, (svc, df) in ndsc_services(model).items():
        env = {**df.env, **environment(svc)}
        assert env["NDSC_METRICS_ADDR"] == "0.0.0.0", f"{name} must expose metrics beyond loopback"
        expected.add(f"{name}:{env['NDSC_METRICS_PORT']}")
    prom = yaml.safe_load(PROMETHEUS.read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == expected


def test_compose_runs_one_decoder_and_an_edge_per_lead_group_with_healthchecks():
    from edge_encoder.settings import EdgeSettings
    from fusion_decoder.settings import DecoderSettings

    model = load_compose(COMPOSE)
    services = ndsc_services(model)
    decoders = [n for n, (s, _) in services.items() if s["command"] == ["decoder"]]
    edges = [n for n, (s, _) in services.items() if s["command"] == ["edge"]]
    assert len(decoders) == 1 and len(edges) >= 4
    known = {"decoder": {f.metadata["env"] for f in dataclasses.fields(DecoderSettings)},
             "edge": {f.metadata["env"] for f in dataclasses.fields(EdgeSettings)}}
    indexes = set()
    for name, (svc, df) in services.items():
        role = svc["command"][0]
        env = environment(svc)
        assert set(env) <= known[role], f"{name}: unknown settings {set(env) - known[role]}"
        assert svc["healthcheck"]["test"][:2] == ["CMD", "ndsc-healthcheck"]
        if role == "edge":
            indexes.add(int(env["NDSC_SOURCE_INDEX"]))
            assert svc["depends_on"][decoders[0]]["condition"] == "service_healthy"
            assert env["NDSC_DECODER"].split(":")[0] == decoders[0]
    assert indexes == set(range(len(edges)))  # each edge its own source
    for name in ("prometheus", "grafana"):
        assert all(d["condition"] == "service_healthy" for d in model["services"][name]["depends_on"].values())
        assert model["services"][name]["healthcheck"]["test"][0] == "CMD"


def test_images_are_multi_stage_non_root_with_healthchecks_and_the_edge_has_no_torch():
    for path in (EDGE_DF, DECODER_DF):
        df = Dockerfile.parse(path)
        assert len(df.stages) >= 2, f"{path.name}: multi-stage"
        (user,) = df.final("USER")
        assert user.split(":")[0] not in ("root", "0")
        assert df.healthcheck[0] == "ndsc-healthcheck"
        assert df.entrypoint == ["ndsc"]
        assert any("--from=build" in c for c in df.final("COPY"))
    installs = [a for i, a in Dockerfile.parse(EDGE_DF).stages[0] if i == "RUN" and "pip install" in a]
    assert installs and all('".[edge]"' in a and "decoder]" not in a and "all]" not in a for a in installs)
    assert "find_spec('torch') is not None" in EDGE_DF.read_text()  # the build fails if torch slipped in
    decoder = Dockerfile.parse(DECODER_DF)
    args = [a for i, a in decoder.stages[0] if i == "ARG"] + [a for i, a in decoder.stages[1] if i == "ARG"]
    assert any(a.startswith("TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu") for a in args)
    assert decoder.stages[0][0] == ("FROM", "${BASE_IMAGE} AS base")


def _dockerignore_keeps(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    keep = True
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for p in patterns:
        neg = p.startswith("!")
        rx = re.escape(p.lstrip("!")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(rx, pre) for pre in prefixes):
            keep = neg
    return keep


def test_every_file_the_images_copy_is_in_the_build_context():
    patterns = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()
                if l.strip() and not l.startswith("#")]
    assert not _dockerignore_keeps("tests/conftest.py", patterns)  # the context stays small
    assert not _dockerignore_keeps("ndsc/__pycache__/cli.cpython-311.pyc", patterns)
    for path in (EDGE_DF, DECODER_DF):
        for stage in Dockerfile.parse(path).stages:
            for instr, args in stage:
                if instr != "COPY" or "--from=" in args:
                    continue
                for src in [a for a in args.split() if not a.startswith("--")][:-1]:
                    assert (REPO / src).exists(), f"{path.name}: COPY {src} does not exist"
                    files = [REPO / src] if (REPO / src).is_file() else sorted((REPO / src).rglob("*.py"))
                    for f in files:
                        rel = str(f.relative_to(REPO))
                        assert _dockerignore_keeps(rel, patterns), f"{path.name}: {rel} excluded by .dockerignore"


def test_image_commands_are_real_ndsc_subcommands():
    from app.cli import build_parser

    model = load_compose(COMPOSE)
    for name, (svc, df) in ndsc_services(model).items():
        argv = df.entrypoint + svc["command"]
        assert argv[0] == "ndsc"
        build_parser().parse_args(argv[1:])  # SystemExit on an unknown subcommand
