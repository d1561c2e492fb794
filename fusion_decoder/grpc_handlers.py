"""Method handlers with tolerant deserializers: malformed or oversized requests reach the
handler as a :class:`BadRequest`, so they are refused with a precise status and a counted
reason (grpc's own failure would be an uncounted INTERNAL)."""
from __future__ import annotations

import grpc

from fusion_decoder.metrics import DecoderMetrics
from fusion_decoder.sessions import StreamRefused
from ndsc.wire import SERVICE_NAME, pb, pb_grpc


class BadRequest:
    """What a request deserializer returns instead of raising, so the handler can refuse it
    with a precise status and a counted reason (grpc's own failure would be an uncounted INTERNAL)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str):
        self.refused = StreamRefused(code, reason, message)


def tolerant_deserializer(message_type, max_bytes: int, metrics: DecoderMetrics, rpc: str):
    """``message_type.FromString`` that turns malformed or oversized input into a :class:`BadRequest`."""

    def parse(raw: bytes):
        if len(raw) > max_bytes:
            metrics.bad_requests.labels(rpc, "oversized").inc()
            return BadRequest(grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized",
                              f"message of {len(raw)} bytes exceeds the limit of {max_bytes}")
        try:
            return message_type.FromString(raw)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            metrics.bad_requests.labels(rpc, "malformed").inc()
            return BadRequest(grpc.StatusCode.INVALID_ARGUMENT, "malformed",
                              f"malformed {message_type.__name__}: {exc}")

    return parse


def _passthrough_or(serialize):
    """Bytes pass through (messages serialized once per window for every subscriber), else ``serialize``."""
    return lambda message: message if isinstance(message, bytes) else serialize(message)


def add_servicer(servicer: pb_grpc.FusionDecoderServicer, server, max_bytes: int, metrics: DecoderMetrics) -> None:
    """Like the generated ``add_FusionDecoderServicer_to_server``, with tolerant deserializers."""
    def des(t, rpc):
        return tolerant_deserializer(t, max_bytes, metrics, rpc)

    handlers = {
        "Uplink": grpc.stream_stream_rpc_method_handler(
            servicer.Uplink, request_deserializer=des(pb.UplinkMessage, "Uplink"),
            response_serializer=pb.Ack.SerializeToString),
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            servicer.Subscribe, request_deserializer=des(pb.SubscribeRequest, "Subscribe"),
            response_serializer=_passthrough_or(pb.Reconstruction.SerializeToString)),
        "SubscribeBatches": grpc.unary_stream_rpc_method_handler(
            servicer.SubscribeBatches, request_deserializer=des(pb.SubscribeRequest, "SubscribeBatches"),
            response_serializer=_passthrough_or(pb.ReconstructionBatch.SerializeToString)),
        "Audit": grpc.unary_unary_rpc_method_handler(
            servicer.Audit, request_deserializer=des(pb.AuditWindow, "Audit"),
            response_serializer=pb.AuditReply.SerializeToString),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelInfo, request_deserializer=des(pb.ModelInfoRequest, "GetModelInfo"),
            response_serializer=pb.ModelInfo.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
