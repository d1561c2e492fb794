"""`docker compose up` runs what `ndsc demo` runs: same bundle, same real-ECG sources, same settings.

Compose's environment is read as ``docker-compose config`` resolves it and compared with the
plan the demo makes from its defaults.
"""
from __future__ import annotations

from pathlib import Path

from ndsc.bundles import DEFAULT_BUNDLE
from app.demo import DEFAULTS, plan_demo
from tests.deploy.conftest import COMPOSE, DEPLOY, LocalStack, load_compose


def _services(model: dict) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(decoder environment, edge environments by source index) of a compose model, image ENV included."""
    stack = LocalStack.from_compose(model, workdir=None)
    decoder = next(s.env for s in stack.services.values() if s.argv[-1] == "decoder")
    edges = sorted((s.env for s in stack.services.values() if s.argv[-1] == "edge"),
                   key=lambda env: int(env["NDSC_SOURCE_INDEX"]))
    return decoder, edges


def _assert_runs_the_demo(model: dict) -> None:
    plan = plan_demo(DEFAULTS)
    decoder, edges = _services(model)
    assert plan.bundle.name == DEFAULT_BUNDLE == "ecg-12lead" and plan.ecg_record
    assert Path(decoder["NDSC_BUNDLE"]).resolve() == plan.bundle.resolve()
    assert float(decoder["NDSC_DEADLINE"]) == DEFAULTS.deadline
    assert [int(e["NDSC_SOURCE_INDEX"]) for e in edges] == list(range(plan.nodes))
    for env, source in zip(edges, plan.sources):
        assert Path(env["NDSC_BUNDLE"]).resolve() == plan.bundle.resolve()
        assert env["NDSC_SOURCE"] == source == "dicom:pydicom#loop=1"  # pydicom's real 12-lead ECG
        assert int(env["NDSC_AUDIT_EVERY"]) == DEFAULTS.audit_every
        assert float(env["NDSC_FLUSH_INTERVAL"]) == DEFAULTS.flush_interval
        assert env.get("NDSC_QUALITY", "") == (DEFAULTS.quality or "")  # both: the bundle's default point
        assert env["NDSC_FAST"] if DEFAULTS.fast else "NDSC_FAST" not in env


def test_compose_as_docker_compose_resolves_it_runs_the_demos_bundle_sources_and_settings():
    _assert_runs_the_demo(load_compose(COMPOSE))


def test_both_images_default_to_the_demos_bundle():
    for dockerfile in ("Dockerfile.edge", "Dockerfile.decoder"):
        text = (DEPLOY / dockerfile).read_text()
        assert f"NDSC_BUNDLE=/opt/ndsc/bundles/{DEFAULT_BUNDLE} " in text, dockerfile
