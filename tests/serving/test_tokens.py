"""Generated per-node credentials: one secret per node, digests for the decoder, kept across starts."""
from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from fusion_decoder.auth import TokenBook
from fusion_decoder.sessions import StreamRefused
from fusion_decoder.tokens import NodeCredential, ensure_tokens, parse_specs
from tests.conftest import REPO


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_specs_name_each_groups_nodes_in_source_order():
    assert parse_specs(["g1:a,b", "g2:c"]) == [NodeCredential("g1", "a", 0), NodeCredential("g1", "b", 1),
                                              NodeCredential("g2", "c", 0)]
    assert parse_specs(["g1:a;g2:c,d"])[-1] == NodeCredential("g2", "d", 1)


@pytest.mark.parametrize("spec", ["g1", "g1:", ":a", "g1:a,a", "g 1:a", "g1:a/b", ""])
def test_a_spec_that_names_no_valid_node_is_refused(spec):
    with pytest.raises(ValueError):
        parse_specs([spec])


def test_every_node_gets_its_own_secret_bound_to_its_source_and_the_decoder_keeps_digests(tmp_path):
    creds = parse_specs(["patient-1:edge-0,edge-1"])
    assert ensure_tokens(tmp_path, creds) == 3  # two nodes and the reader
    book = TokenBook.load(tmp_path / "decoder.tokens")
    secrets = {c: (tmp_path / "edges" / c.filename).read_text().strip() for c in creds}
    assert len(set(secrets.values())) == 2 and all(len(s) >= 40 for s in secrets.values())
    text = (tmp_path / "decoder.tokens").read_text()
    assert not any(s in text for s in secrets.values())  # digests only
    for path in [tmp_path / "decoder.tokens", tmp_path / "reader.token", *(tmp_path / "edges").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for c, secret in secrets.items():
        book.check_node(c.group, c.node, c.source, _bearer(secret))
    with pytest.raises(StreamRefused) as other:  # edge-0's secret for edge-1's source
        book.check_node("patient-1", "edge-1", 1, _bearer(secrets[creds[0]]))
    assert other.value.code == grpc.StatusCode.PERMISSION_DENIED
    book.check_reader("patient-1", _bearer((tmp_path / "reader.token").read_text().strip()))


def test_a_second_start_keeps_the_secrets_and_a_deleted_one_is_rotated(tmp_path):
    creds = parse_specs(["g:a,b"])
    ensure_tokens(tmp_path, creds)
    before = {p.name: p.read_text() for p in (tmp_path / "edges").iterdir()}
    assert ensure_tokens(tmp_path, creds) == 0
    assert {p.name: p.read_text() for p in (tmp_path / "edges").iterdir()} == before
    (tmp_path / "edges" / "g__a.token").unlink()
    assert ensure_tokens(tmp_path, creds) == 1
    book = TokenBook.load(tmp_path / "decoder.tokens")
    with pytest.raises(StreamRefused):  # the old secret no longer works
        book.check_node("g", "a", 0, _bearer(before["g__a.token"].strip()))
    book.check_node("g", "a", 0, _bearer((tmp_path / "edges" / "g__a.token").read_text().strip()))
    ensure_tokens(tmp_path, parse_specs(["g:a"]))  # b dropped from the spec: refused from now on
    with pytest.raises(StreamRefused):
        TokenBook.load(tmp_path / "decoder.tokens").check_node("g", "b", 1, _bearer(before["g__b.token"].strip()))


def test_ndsc_tokens_writes_the_directory_the_docs_describe(tmp_path):
    run = subprocess.run([sys.executable, "-m", "ndsc", "tokens", str(tmp_path / "t"), "group-0:node-0,node-1"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "NDSC_TOKENS_READY" in run.stdout and "nodes=2 created=3" in run.stdout
    assert sorted(p.name for p in (tmp_path / "t" / "edges").iterdir()) == ["group-0__node-0.token",
                                                                          "group-0__node-1.token"]
    bad = subprocess.run([sys.executable, "-m", "ndsc", "tokens", str(tmp_path / "u"), "group-0"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert bad.returncode != 0 and "GROUP:NODE" in bad.stderr and not Path(tmp_path / "u").exists()
