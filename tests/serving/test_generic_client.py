"""A client that knows nothing of ndsc's stubs: it learns the service by server reflection."""
from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from ndsc.bundle import load_bundle


@pytest.fixture(scope="module")
def decoder_in_thread(gaussian_bundle):
    """A real DecoderServer on its own event loop thread, for blocking clients."""
    from prometheus_client import CollectorRegistry

    from fusion_decoder.server import DecoderServer

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():
        server = DecoderServer(load_bundle(gaussian_bundle), "127.0.0.1:0", registry=CollectorRegistry())
        return server, await server.start()

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    yield server, f"127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _method(pool, service: str, name: str):
    m = pool.FindServiceByName(service).FindMethodByName(name)
    return (message_factory.GetMessageClass(m.input_type), message_factory.GetMessageClass(m.output_type))


def test_reflection_client_reads_model_info_and_is_refused_with_a_wrong_bundle(decoder_in_thread, gaussian_bundle):
    server, address = decoder_in_thread
    bundle = load_bundle(gaussian_bundle)
    with grpc.insecure_channel(address) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        assert "ndsc.v1.FusionDecoder" in db.get_services()
        pool = descriptor_pool.DescriptorPool(db)
        req_cls, resp_cls = _method(pool, "ndsc.v1.FusionDecoder", "GetModelInfo")
        call = channel.unary_unary("/ndsc.v1.FusionDecoder/GetModelInfo", request_serializer=req_cls.SerializeToString,
                                   response_deserializer=resp_cls.FromString)
        info = call(req_cls(), timeout=10)
        assert info.bundle_id == bundle.bundle_id
        assert [list(s.input_shape) for s in info.sources] == [list(s.input_shape) for s in bundle.sources]

        up_cls, ack_cls = _method(pool, "ndsc.v1.FusionDecoder", "Uplink")
        uplink = channel.stream_stream("/ndsc.v1.FusionDecoder/Uplink", request_serializer=up_cls.SerializeToString,
                                       response_deserializer=ack_cls.FromString)
        header = up_cls()
        header.header.node_id, header.header.bundle_id = "generic", "sha256:not-this-one"
        with pytest.raises(grpc.RpcError) as err:
            list(uplink(iter([header]), timeout=10))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "ndsc.v1.FusionDecoder"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _reflect_v1(channel, *requests):
    """One grpc.reflection.v1 stream: each request's answer, with the v1 messages of proto/grpc/reflection/v1."""
    from ndsc.wire import reflection_v1_pb2 as v1

    call = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=v1.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=v1.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=10))


def test_a_reflection_v1_client_lists_describes_and_calls_the_decoder(decoder_in_thread, gaussian_bundle):
    from google.protobuf import descriptor_pb2

    from ndsc.wire import reflection_v1_pb2 as v1

    _, address = decoder_in_thread
    with grpc.insecure_channel(address) as channel:
        listed, described, itself, unknown = _reflect_v1(
            channel, v1.ServerReflectionRequest(list_services=""),
            v1.ServerReflectionRequest(file_containing_symbol="ndsc.v1.FusionDecoder"),
            v1.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
            v1.ServerReflectionRequest(file_containing_symbol="no.such.Service"))
        names = {s.name for s in listed.list_services_response.service}
        assert names == {"ndsc.v1.FusionDecoder", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                         "grpc.reflection.v1alpha.ServerReflection"}
        assert set(ProtoReflectionDescriptorDatabase(channel).get_services()) == names  # v1alpha says the same

        pool = descriptor_pool.DescriptorPool()
        for raw in reversed(described.file_descriptor_response.file_descriptor_proto):  # dependencies first
            pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
        req_cls, resp_cls = _method(pool, "ndsc.v1.FusionDecoder", "GetModelInfo")
        call = channel.unary_unary("/ndsc.v1.FusionDecoder/GetModelInfo", request_serializer=req_cls.SerializeToString,
                                   response_deserializer=resp_cls.FromString)
        assert call(req_cls(), timeout=10).bundle_id == load_bundle(gaussian_bundle).bundle_id

        files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in itself.file_descriptor_response.file_descriptor_proto]
        assert [f.package for f in files] == ["grpc.reflection.v1"]
        assert unknown.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_the_shipped_health_proto_is_the_health_service_the_decoder_serves(decoder_in_thread):
    import importlib.util

    from google.protobuf import descriptor_pb2

    from ndsc.wire import reflection_v1_pb2 as v1
    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    gen_protos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_protos)
    shipped = gen_protos.compiled("grpc/health/v1/health.proto")

    _, address = decoder_in_thread
    with grpc.insecure_channel(address) as channel:
        (reply,) = _reflect_v1(channel, v1.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health"))
    (served,) = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in reply.file_descriptor_response.file_descriptor_proto]
    served.name = shipped.name  # grpcio-health-checking registers it as grpc_health/v1/health.proto
    assert served == shipped
    assert [m.name for m in shipped.service[0].method] == ["Check", "List", "Watch"]
    with grpc.insecure_channel(address) as channel:  # what docs/wire.md says of each method
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="ndsc.v1.FusionDecoder"), timeout=10).status \
            == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            health.List(health_pb2.HealthListRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_v1_and_v1alpha_also_serve_from_a_threaded_grpc_server():
    from concurrent import futures

    from ndsc.wire import reflection_v1_pb2 as v1
    from ndsc.wire.reflection import enable_reflection

    server = grpc.server(futures.ThreadPoolExecutor(2))
    enable_reflection(["ndsc.v1.FusionDecoder"], server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            (listed,) = _reflect_v1(channel, v1.ServerReflectionRequest(list_services=""))
            names = {s.name for s in listed.list_services_response.service}
            assert names == {"ndsc.v1.FusionDecoder", "grpc.reflection.v1.ServerReflection",
                             "grpc.reflection.v1alpha.ServerReflection"}
            assert set(ProtoReflectionDescriptorDatabase(channel).get_services()) == names
    finally:
        server.stop(None)
