"""Read the deployment files with docker's own tools, and run what compose would run, locally.

There is no Docker engine in CI, so these helpers turn ``compose.yaml`` as
``docker-compose config`` resolves it (plus the images' Dockerfiles, read with
dockerfile-parse: ENTRYPOINT, ENV, COPY) into local processes on loopback:
every compose service built from ``deploy/Dockerfile.*`` runs with its own command
and environment, with compose hostnames and container ports rewritten to
127.0.0.1 and free ports, and image paths rewritten to the checkout's files.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import REPO, require_system_tools

DEPLOY = REPO / "deploy"
COMPOSE = REPO / "compose.yaml"
HEALTHCHECK = DEPLOY / "healthcheck.py"

def require_tool(name: str) -> str:
    """Path of a Debian tool; skip without it unless CI demands it (NDSC_REQUIRE_SYSTEM_TOOLS=1)."""
    path = shutil.which(name)
    if path is None:
        if require_system_tools():
            pytest.fail(f"{name} is required (NDSC_REQUIRE_SYSTEM_TOOLS=1) but not installed")
        pytest.skip(f"{name} not installed (apt-get install docker-compose prometheus)")
    return path


# --- compose ----------------------------------------------------------------------

def load_compose(*files: Path, env: Mapping[str, str] | None = None) -> dict:
    """The compose model of ``files`` (later ones override) as ``docker-compose config`` resolves it.

    ``env`` is the whole environment compose interpolates from (nothing of this process's leaks in).
    """
    argv = [require_tool("docker-compose")]
    for path in files:
        argv += ["-f", str(path)]
    run = subprocess.run([*argv, "config"], capture_output=True, text=True, timeout=60, cwd=REPO,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})})
    if run.returncode != 0:
        raise ValueError(f"docker-compose config: {run.stderr.strip()}")
    return yaml.safe_load(run.stdout)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


# --- Dockerfiles --------------------------------------------------------------------

@dataclass
class Dockerfile:
    """What a local run needs from an image (entrypoint, runtime ENV, COPY destinations), read by
    dockerfile-parse."""

    path: Path
    stages: list[list[tuple[str, str]]]  # per FROM: (instruction, arguments)
    env: dict[str, str]  # the final stage's ENV, as docker resolves it

    @classmethod
    def parse(cls, path: Path) -> "Dockerfile":
        with open(path, "rb") as f:
            parser = DockerfileParser(fileobj=f)
            structure, env = parser.structure, dict(parser.envs)
        stages: list[list[tuple[str, str]]] = []
        for item in structure:
            if item["instruction"] == "FROM":
                stages.append([])
            if stages and item["instruction"] != "COMMENT":
                stages[-1].append((item["instruction"], item["value"].strip()))
        return cls(path, stages, env)

    def final(self, instr: str) -> list[str]:
        return [a for i, a in self.stages[-1] if i == instr]

    @property
    def entrypoint(self) -> list[str]:
        return json.loads(self.final("ENTRYPOINT")[-1])

    @property
    def healthcheck(self) -> list[str]:
        args = self.final("HEALTHCHECK")[-1]
        return json.loads(args[args.index("CMD") + 3:].strip())

    def copies(self) -> dict[str, Path]:
        """Absolute image path → checkout path, for COPYs from the build context."""
        out: dict[str, Path] = {}
        for stage in self.stages:
            for instr, args in stage:
                if instr != "COPY" or "--from=" in args:
                    continue
                parts = [p for p in shlex.split(args) if not p.startswith("--")]
                for src in parts[:-1]:
                    if parts[-1].startswith("/"):
                        out[parts[-1]] = REPO / src
        return out


def dockerfile_of(service: dict) -> Dockerfile | None:
    build = service.get("build")
    if not isinstance(build, dict) or not str(build.get("dockerfile", "")).startswith("deploy/Dockerfile."):
        return None
    return Dockerfile.parse(REPO / build.get("context", ".") / build["dockerfile"])


def ndsc_services(model: dict) -> dict[str, tuple[dict, Dockerfile]]:
    """Services built from the ndsc images, by name."""
    out = {}
    for name, svc in model["services"].items():
        df = dockerfile_of(svc)
        if df is not None:
            out[name] = (svc, df)
    return out


def local_argv(argv: list[str]) -> list[str]:
    """An image command as a local one: ``ndsc`` and ``ndsc-healthcheck`` from this checkout."""
    if argv[0] == "ndsc":
        return [sys.executable, "-m", "ndsc", *argv[1:]]
    if argv[0] == "ndsc-healthcheck":
        return [sys.executable, str(HEALTHCHECK), *argv[1:]]
    raise AssertionError(f"unexpected executable {argv[0]!r} in an ndsc image command")


# --- running compose's ndsc services locally -----------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def named_volumes(model: dict, service: dict) -> dict[str, str]:
    """Container path → volume name, for the service's mounts of the model's named volumes
    (short ``NAME:/path[:mode]`` or long ``{type: volume, source, target}`` syntax)."""
    names = set(model.get("volumes") or {})
    out = {}
    for mount in service.get("volumes") or []:
        if isinstance(mount, str):
            source, _, rest = mount.partition(":")
            target = rest.split(":", 1)[0]
        else:
            source, target = mount.get("source"), mount.get("target")
        if source in names:
            out[target] = source
    return out


@dataclass
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str]
    depends_on: list[str]
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def healthy(self) -> bool:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NDSC_")}
        run = subprocess.run(self.healthcheck, env={**env, **self.env}, capture_output=True, timeout=30)
        return run.returncode == 0


@dataclass
class LocalStack:
    """Compose's ndsc services as processes on loopback, ports and paths rewritten."""

    services: dict[str, LocalService]
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    volumes: list[Path] = field(default_factory=list)  # the named volumes, as directories of the run

    @classmethod
    def from_compose(cls, model: dict, workdir: Path) -> "LocalStack":
        found = ndsc_services(model)
        ports: dict[tuple[str, int], int] = {}

        def port(service: str, container_port: int) -> int:
            return ports.setdefault((service, container_port), free_port())

        services = {}
        for name, (svc, df) in found.items():
            env = {**{k: v for k, v in df.env.items() if k.startswith("NDSC_")}, **environment(svc)}
            for key, value in list(env.items()):
                m = re.fullmatch(r"([A-Za-z0-9_.-]+):(\d+)", value)
                if m and m.group(1) in model["services"]:  # another service, e.g. decoder:50051
                    env[key] = f"127.0.0.1:{port(m.group(1), int(m.group(2)))}"
                elif m and m.group(1) in ("0.0.0.0", "[::]"):  # this service's listen address
                    env[key] = f"127.0.0.1:{port(name, int(m.group(2)))}"
                elif value in ("0.0.0.0", "::"):
                    env[key] = "127.0.0.1"
                else:
                    # a named volume is a directory of the run (shared by the services that mount it),
                    # an image path the checkout's file
                    mounts = {path: workdir / "volumes" / name
                              for path, name in named_volumes(model, svc).items()} if workdir else {}
                    for image_path, local in {**df.copies(), **mounts}.items():
                        if value == image_path or value.startswith(image_path + "/"):
                            env[key] = str(local) + value[len(image_path):]
            if "NDSC_METRICS_PORT" in env:
                env["NDSC_METRICS_PORT"] = str(port(name, int(env["NDSC_METRICS_PORT"])))
            hc = svc.get("healthcheck", {}).get("test") or ["CMD", *df.healthcheck]
            assert hc[0] == "CMD", f"{name}: healthcheck must be exec form"
            argv = df.entrypoint + list(svc.get("command") or [])
            depends = svc.get("depends_on") or {}
            services[name] = LocalService(name, local_argv(argv), env, local_argv(hc[1:]),
                                          [d for d in depends if d in found])
        volumes = [workdir / "volumes" / name for name in model.get("volumes") or {}] if workdir else []
        return cls(services, ports, volumes)

    def metrics_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.services[name].env['NDSC_METRICS_PORT']}/metrics"

    def start(self, workdir: Path, timeout: float = 90.0) -> None:
        """Start in dependency order, waiting for each dependency's healthcheck (service_healthy)."""
        for volume in self.volumes:  # compose creates named volumes empty before the first container
            volume.mkdir(parents=True, exist_ok=True)
        started: set[str] = set()
        while len(started) < len(self.services):
            ready = [s for s in self.services.values()
                     if s.name not in started and all(d in started for d in s.depends_on)]
            assert ready, "dependency cycle in compose services"
            for svc in ready:
                svc.log = workdir / f"{svc.name}.log"
                # Like a container: only the service's own NDSC_* settings, none of ours.
                env = {k: v for k, v in os.environ.items() if not k.startswith("NDSC_")}
                env.update(PYTHONUNBUFFERED="1", **svc.env)
                svc.proc = subprocess.Popen(svc.argv, env=env, cwd=workdir, stdout=svc.log.open("wb"),
                                            stderr=subprocess.STDOUT)
            for svc in ready:
                self.wait_healthy(svc, timeout)
                started.add(svc.name)

    def wait_healthy(self, svc: LocalService, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.proc.poll() is not None:
                raise AssertionError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.log.read_text()[-3000:]}")
            if svc.healthy():
                return
            time.sleep(0.5)
        raise AssertionError(f"{svc.name} not healthy after {timeout}s:\n{svc.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM in reverse dependency order (as ``docker compose down``); exit codes by service."""
        codes: dict[str, int | None] = {}
        order = [s for s in self.services.values() if s.proc is not None]
        order.sort(key=lambda s: len(s.depends_on) == 0)  # dependents first
        for svc in order:
            if svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGTERM)
            try:
                codes[svc.name] = svc.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                svc.proc.kill()
                svc.proc.wait()
                codes[svc.name] = None
        return codes


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse a Prometheus exposition into {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def exported_names(text: str) -> set[str]:
    """Every sample name a scrape can carry, including families with no samples yet."""
    from prometheus_client.parser import text_string_to_metric_families

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",)}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names
