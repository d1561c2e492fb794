"""gRPC server reflection, both ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

grpcio-reflection (1.85) implements only v1alpha (grpc/grpc#38576), while newer clients
(grpcurl, grpc-java, Postman) ask for v1 first. The v1 proto is v1alpha's under a stable
package name: the same messages, field numbers and method, so the same bytes on the
wire. v1 is therefore served by the v1alpha servicer itself, its messages (de)serialised
with the v1alpha classes; importing ``reflection_v1_pb2`` puts the v1 descriptor in the
default pool, so reflection can describe the v1 service too.
"""

from __future__ import annotations

from typing import Iterable

import grpc
from grpc_reflection.v1alpha import reflection as v1alpha
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_pb2_grpc

from ndsc.wire import reflection_v1_pb2 as v1_pb2

V1_SERVICE_NAME = v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1ALPHA_SERVICE_NAME = v1alpha.SERVICE_NAME


def enable_reflection(service_names: Iterable[str], server: grpc.Server | grpc.aio.Server) -> None:
    """Serve reflection v1 and v1alpha on ``server``, listing ``service_names`` and both reflection services."""
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer_class = (
        v1alpha.aio.ReflectionServicer if isinstance(server, grpc.aio.Server) else v1alpha.ReflectionServicer
    )
    servicer = servicer_class(names)
    v1alpha_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha_pb2.ServerReflectionRequest.FromString,
        response_serializer=v1alpha_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": v1}),)
    )
