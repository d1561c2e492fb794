"""Helpers for serving tests: real grpc.aio servers and edge nodes on loopback."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Sequence

import grpc
import numpy as np
from prometheus_client import CollectorRegistry

from ndsc.wire import pb, pb_grpc


@contextlib.asynccontextmanager
async def running_decoder(bundle_path: Path, **kwargs):
    """A real DecoderServer on an ephemeral loopback port with a fresh registry."""
    from fusion_decoder.server import DecoderServer
    from ndsc.bundle import load_bundle

    registry = CollectorRegistry()
    listen = kwargs.pop("listen", "127.0.0.1:0")
    server = DecoderServer(load_bundle(bundle_path), listen, registry=registry, **{"deadline": 30.0, **kwargs})
    port = await server.start()
    try:
        yield server, f"127.0.0.1:{port}", registry
    finally:
        await server.stop()


def edge_node(bundle_path: Path, source_index: int, decoder: str, **settings):
    """A real EdgeNode (fast, fresh registry)."""
    from edge_encoder.node import EdgeNode
    from edge_encoder.settings import EdgeSettings

    s = EdgeSettings(bundle=str(bundle_path), source_index=source_index, decoder=decoder,
                     **{"fast": True, "audit_every": 0, **settings})
    return EdgeNode(s, CollectorRegistry())


class Subscription:
    """Collects every Reconstruction of a Subscribe (or, with ``batches``, SubscribeBatches) stream
    in a background task; ``batch_sizes`` lists the windows per message."""

    def __init__(self, address: str, include_samples: bool = True, group: str = "", f32le: bool = False,
                 batches: bool = False, channel_options: Sequence[tuple[str, int]] = ()):
        self.channel = grpc.aio.insecure_channel(address, options=list(channel_options))
        stub = pb_grpc.FusionDecoderStub(self.channel)
        self.call = (stub.SubscribeBatches if batches else stub.Subscribe)(
            pb.SubscribeRequest(group=group, include_samples=include_samples, samples_f32le=f32le))
        self.items: list[pb.Reconstruction] = []
        self.batch_sizes: list[int] = []
        self._arrived = asyncio.Condition()
        self.task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for message in self.call:
            got = list(message.windows) if isinstance(message, pb.ReconstructionBatch) else [message]
            self.items.extend(got)
            self.batch_sizes.append(len(got))
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` reconstructions have arrived: the event a test awaits where it would otherwise
        sleep past the aligner's deadline."""
        async def arrived() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.items) >= count)

        await asyncio.wait_for(arrived(), timeout)

    async def wait_started(self, registry: CollectorRegistry, count: int = 1) -> None:
        while (registry.get_sample_value("ndsc_subscribers") or 0) < count:
            await asyncio.sleep(0.01)

    async def finish(self) -> list[pb.Reconstruction]:
        """After the server stopped (streams end on drain)."""
        await asyncio.wait_for(self.task, 10)
        await self.channel.close()
        return self.items


def samples(r: pb.Reconstruction) -> np.ndarray:
    """A Reconstruction's samples, from whichever field carries them (f32le bytes or floats)."""
    if r.samples_f32le:
        return np.frombuffer(r.samples_f32le, dtype="<f4")
    return np.asarray(r.samples, dtype=np.float32)


def x_hat_by_window(items) -> dict[int, np.ndarray]:
    return {r.window: samples(r).reshape(tuple(r.shape)) for r in items}


def labels(group="default", node=None, source=None, **extra) -> dict[str, str]:
    out = {"group": group, **extra}
    if node is not None:
        out["node"] = node
    if source is not None:
        out["source"] = str(source)
    return out


def replay_start(bundle_path: Path) -> int:
    """First window index of the bundle's test-split replay spec."""
    from ndsc.bundle import load_bundle
    from ndsc.sources import parse_kv

    return int(parse_kv(load_bundle(bundle_path).extra["edge_source"].split(":", 1)[1])["start"])


async def raw_uplink(address, messages, metadata=(), channel=None, raw=False):
    """Send ``messages`` (protobufs, or bytes with raw=True) on one Uplink stream.

    Returns (acks, status code, details)."""
    own = channel is None
    channel = channel or grpc.aio.insecure_channel(address)
    try:
        if raw:
            call = channel.stream_stream("/ndsc.v1.FusionDecoder/Uplink", request_serializer=lambda b: b,
                                         response_deserializer=pb.Ack.FromString)(iter(messages), metadata=metadata)
        else:
            call = pb_grpc.FusionDecoderStub(channel).Uplink(iter(messages), metadata=metadata)
        acks = []
        try:
            async for ack in call:
                acks.append(ack.last_seq)
        except grpc.aio.AioRpcError:
            pass
        return acks, await call.code(), await call.details()
    finally:
        if own:
            await channel.close()
