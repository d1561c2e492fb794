"""Helpers for reliability tests: raw uplinks (well- or ill-formed), real payloads, certificates."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ndsc.wire import TOKEN_METADATA_KEY, FrameData, crc32, pack_batch, pb


def encoded_windows(bundle_path: Path, n: int) -> list[tuple[int, list[bytes]]]:
    """The first ``n`` windows of the bundle's replay source, coded by the real edge encoders."""
    from edge_encoder.encoder import EdgeEncoder
    from ndsc.bundle import load_bundle
    from ndsc.sources.base import open_source

    bundle = load_bundle(bundle_path)
    out: dict[int, list[bytes]] = {}
    for i in range(bundle.n_sources):
        enc = EdgeEncoder(bundle, i)
        source = open_source(bundle.extra["edge_source"], i, enc.info.input_shape)
        for k, w in zip(range(n), source.windows()):
            out.setdefault(w.index, []).append(enc.encode(w.data))
    return sorted(out.items())


def header(bundle, source=0, group="default", node=None, bundle_id=None, incarnation=1, input_shape=None):
    info = bundle.sources[source] if source < bundle.n_sources else bundle.sources[0]
    return pb.UplinkMessage(header=pb.StreamHeader(
        group=group, node_id=node if node is not None else f"node{source}", source_index=source,
        bundle_id=bundle_id or bundle.bundle_id, input_shape=list(input_shape or info.input_shape),
        latent_shape=list(info.latent_shape), incarnation=incarnation))


def batch(payloads, first_seq=1, first_window=0, crcs=None, capture_us=None):
    """Frames with consecutive seqs and windows, captured now (or at ``capture_us``, µs), 1 ms apart."""
    t0 = int(time.time() * 1e6) if capture_us is None else capture_us
    frames = [FrameData(first_seq + j, first_window + j, t0 + 1000 * j,
                        crcs[j] if crcs else crc32(p), p) for j, p in enumerate(payloads)]
    return pb.UplinkMessage(batch=pack_batch(frames))


def bearer(token: str | None) -> tuple:
    return ((TOKEN_METADATA_KEY, f"Bearer {token}"),) if token else ()




def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate (openssl CLI)."""
    d = Path(directory)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=ndsc test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=ndsc {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {k: d / k for k in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture(scope="session")
def gaussian_dropout_bundle(tmp_path_factory) -> Path:
    """The 2-source Gaussian bundle (ρ = 0.9) trained with random source dropout, so its joint
    decoder can estimate a missing source from the other."""
    from tests.conftest import tiny_gaussian_config
    from training.pipeline import train_and_export

    cfg = tiny_gaussian_config(steps=300, source_dropout=0.3)
    path, _ = train_and_export(cfg, tmp_path_factory.mktemp("bundles") / "gaussian_dropout")
    return path
