"""The plain logic under the servicer: aligner, sessions, settings (no sockets)."""
from __future__ import annotations

import argparse

import grpc
import pytest

from edge_encoder.settings import EdgeSettings
from fusion_decoder.aligner import Aligner
from fusion_decoder.sessions import SessionTable, StreamRefused
from fusion_decoder.settings import DecoderSettings
from ndsc.bundle import load_bundle
from ndsc.wire import pb
from ndsc.wire.settings import add_arguments, from_args


def test_aligner_releases_a_window_once_all_sources_arrived():
    a = Aligner("g", 3, deadline=1.0)
    assert a.add(5, 0, b"a", 1, now=0.0).status == "pending"
    assert a.add(5, 2, b"c", 1, now=0.1).status == "pending"
    res = a.add(5, 1, b"b", 1, now=0.2)
    assert res.status == "released" and res.released[0].payloads == [b"a", b"b", b"c"]
    assert a.add(5, 1, b"b", 1, now=0.3).status == "late"


def test_aligner_deadline_releases_partial_windows_with_missing_sources_as_none():
    a = Aligner("g", 2, deadline=1.0)
    a.add(1, 0, b"x", 1, now=0.0)
    a.add(2, 0, b"y", 1, now=0.5)
    assert a.expire(now=0.99) == []
    (w,) = a.expire(now=1.0)
    assert w.window == 1 and w.payloads == [b"x", None] and w.missing == [1]
    assert a.add(1, 1, b"late", 1, now=1.1).status == "late"
    assert [w.window for w in a.drain(now=1.2)] == [2]


def test_aligner_keeps_each_sources_operating_point():
    a = Aligner("g", 3, deadline=1.0)
    a.add(0, 0, b"a", 1, now=0.0, quality="1")
    a.add(0, 2, b"c0", 1, now=0.0, chunk=0, chunks=2, quality="3")
    a.add(0, 2, b"c1", 1, now=0.0, chunk=1, chunks=2, quality="3")
    (w,) = a.add(0, 1, b"b", 1, now=0.1).released
    assert w.payloads == [b"a", b"b", b"c0c1"] and w.qualities == ["1", None, "3"]  # None: the default point


def test_aligner_bounds_what_it_holds():
    a = Aligner("g", 2, deadline=100.0, max_pending=2)
    a.add(1, 0, b"", 1, 0.0)
    a.add(2, 0, b"", 1, 0.0)
    res = a.add(3, 0, b"", 1, 0.0)
    assert [w.window for w in res.released] == [1]


def test_session_table_refuses_with_precise_codes(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)
    table = SessionTable(bundle)
    info = bundle.sources[0]

    def header(**kw):
        base = dict(group="g", node_id="n0", source_index=0, bundle_id=bundle.bundle_id,
                    input_shape=list(info.input_shape), latent_shape=list(info.latent_shape), incarnation=1)
        return pb.StreamHeader(**{**base, **kw})

    cases = [(dict(bundle_id="sha256:x"), grpc.StatusCode.FAILED_PRECONDITION, "bundle_mismatch"),
             (dict(source_index=9), grpc.StatusCode.INVALID_ARGUMENT, "unknown_source"),
             (dict(input_shape=[1, 3]), grpc.StatusCode.INVALID_ARGUMENT, "shape_mismatch"),
             (dict(node_id=""), grpc.StatusCode.INVALID_ARGUMENT, "bad_header"),
             # a fixed-rate bundle has no operating points to name
             (dict(quality="2"), grpc.StatusCode.INVALID_ARGUMENT, "unknown_quality"),
             (dict(group="a b"), grpc.StatusCode.INVALID_ARGUMENT, "bad_group"),
             (dict(node_id="n" * 65), grpc.StatusCode.INVALID_ARGUMENT, "bad_node_id"),
             (dict(incarnation=0), grpc.StatusCode.INVALID_ARGUMENT, "bad_incarnation")]
    for change, code, reason in cases:
        with pytest.raises(StreamRefused) as err:
            table.open(header(**change))
        assert (err.value.code, err.value.reason) == (code, reason)
    session = table.open(header())
    assert session.quality == ""
    session.active = True
    with pytest.raises(StreamRefused) as err:
        table.open(header(node_id="n1"))
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    session.last_seq = 7
    assert table.open(header()).last_seq == 7  # the same node process resumes
    assert table.open(header(incarnation=99)).last_seq == 0 and table.restarts == 1  # a restarted one does not


def test_settings_come_from_flags_then_environment_then_defaults():
    parser = argparse.ArgumentParser()
    add_arguments(parser, EdgeSettings)
    env = {"NDSC_BUNDLE": "/b", "NDSC_SOURCE_INDEX": "2", "NDSC_DECODER": "h:1", "NDSC_FAST": "1",
           "NDSC_GROUP": "ward"}
    s = from_args(EdgeSettings, parser.parse_args(["--decoder", "x:9"]), env)
    assert (s.bundle, s.source_index, s.decoder, s.fast, s.group, s.node_name) == ("/b", 2, "x:9", True, "ward",
                                                                                   "node2")
    parser = argparse.ArgumentParser()
    add_arguments(parser, DecoderSettings)
    d = from_args(DecoderSettings, parser.parse_args(["--max-batch", "8"]),
                  {"NDSC_LISTEN": "0.0.0.0:7", "NDSC_METRICS_PORT": "9", "NDSC_DEADLINE": "0.5"})
    assert (d.listen, d.metrics_port, d.deadline, d.max_batch, d.bundle) == ("0.0.0.0:7", 9, 0.5, 8, None)
    with pytest.raises(ValueError):
        d.validate()


def test_decoder_asked_for_cuda_without_a_gpu_decodes_on_cpu(gaussian_bundle):
    import torch
    from prometheus_client import CollectorRegistry

    from fusion_decoder.server import DecoderServer

    server = DecoderServer(load_bundle(gaussian_bundle), registry=CollectorRegistry(), device="cuda")
    assert server.runtime.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("bundle_name", ["gaussian", "ecg-synth-quick", "ecg-12lead", "stereo-middlebury"])
def test_the_decoder_warms_its_joint_decoder_up_before_it_serves(bundle_name, gaussian_bundle):
    """The first calls on a device (CUDA's cuDNN handles and kernels, oneDNN's primitives) are paid
    before the port opens, not by the first windows' latency."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from fusion_decoder.runtime import CPU_SLICE
    from fusion_decoder.server import DecoderServer
    from ndsc.bundles import default_bundle

    path = gaussian_bundle if bundle_name == "gaussian" else default_bundle(bundle_name)
    server = DecoderServer(load_bundle(path), listen="127.0.0.1:0", registry=CollectorRegistry())
    calls: list[int] = []
    runtime = server.runtime
    # 1-D window bundles run the traced graph (JointDecoderRuntime.graph), stereo frames the eager model
    assert (runtime.graph is not None) == (bundle_name != "stereo-middlebury")
    if runtime.graph is not None:
        graph = runtime.graph

        def recording(*args):
            calls.append(len(args[0]))
            return graph(*args)

        runtime.graph = recording
    else:
        runtime.model.register_forward_hook(lambda _m, args, _out: calls.append(len(args[0])))

    async def start_and_stop() -> None:
        await server.start()
        await server.stop()

    asyncio.run(start_and_stop())
    # windows of 1-D latents on CPU: one batch of every slice size (oneDNN builds each size's primitives
    # on first use); other latents: 1, 4, 16 and 64 windows, only as many as fit 2^17 values (a stereo
    # patch: one window). None of them real.
    every_slice = list(range(1, CPU_SLICE + 1))
    expected = {"gaussian": every_slice, "ecg-synth-quick": every_slice, "ecg-12lead": every_slice,
                "stereo-middlebury": [1]}[bundle_name]
    assert calls == expected


def test_the_decoder_serves_on_uvloop_and_on_asyncio_when_asked():
    import asyncio

    from fusion_decoder.cli import run_event_loop

    async def loop_module() -> int:
        return 1 if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else 0

    assert run_event_loop(loop_module(), "uvloop") == 1
    assert run_event_loop(loop_module(), "asyncio") == 0
