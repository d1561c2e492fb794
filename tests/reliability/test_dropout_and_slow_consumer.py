"""A node that stops (deadline, estimated sources) and a Subscribe consumer that stops reading."""
from __future__ import annotations

import asyncio
import math

import grpc
import numpy as np

from ndsc.bundle import load_bundle
from ndsc.wire import pb, pb_grpc
from tests.serving.conftest import Subscription, edge_node, running_decoder

SPEC = "gaussian:n=2,rho=0.9,seed=0,start=0,count={count}"


def test_guarantee_a_stopped_node_is_estimated_from_the_others_marked_and_scored_apart(gaussian_dropout_bundle):
    bundle = load_bundle(gaussian_dropout_bundle)
    from ndsc.sources.synthetic import GaussianSources

    gen = GaussianSources(2, 0.9, channels=1, samples=bundle.sources[0].input_shape[-1])

    async def scenario():
        async with running_decoder(gaussian_dropout_bundle, deadline=0.3) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            # node 1 stops after 10 windows; node 0 goes on to 40
            nodes = [edge_node(gaussian_dropout_bundle, 0, address, source=SPEC.format(count=40)),
                     edge_node(gaussian_dropout_bundle, 1, address, source=SPEC.format(count=10))]
            await asyncio.gather(*(n.run() for n in nodes))
            await sub.wait_for(40)  # the deadline releases the partial windows
            async with grpc.aio.insecure_channel(address) as ch:  # raw windows of both sources, scored apart
                stub = pb_grpc.FusionDecoderStub(ch)
                for k in range(40):
                    for i in range(2):
                        await stub.Audit(pb.AuditWindow(
                            group="default", node_id=f"ref{i}", source_index=i, bundle_id=bundle.bundle_id,
                            window=k, shape=list(bundle.sources[i].input_shape),
                            samples_f32le=gen.window(k)[i].astype("<f4").tobytes()))
        return await sub.finish(), registry

    items, registry = asyncio.run(scenario())
    by_window = {r.window: r for r in items}
    assert sorted(by_window) == list(range(40))  # every window reconstructed, also without node 1
    for k, r in by_window.items():
        assert list(r.present) == [True, k < 10]
        assert r.shape[0] == 2 and len(r.samples) == math.prod(r.shape)  # both sources reconstructed
        assert r.payload_bytes[1] == 0 if k >= 10 else r.payload_bytes[1] > 0
    lab = {"group": "default", "source": "1"}
    assert registry.get_sample_value("ndsc_estimated_sources_total", lab) == 30
    assert registry.get_sample_value("ndsc_aligner_windows_total", {"group": "default", "outcome": "partial"}) == 30
    assert registry.get_sample_value("ndsc_audit_estimated_windows_total", lab) == 30
    assert registry.get_sample_value("ndsc_audit_windows_total", lab) == 10
    decoded = registry.get_sample_value("ndsc_audit_rmse", lab)
    estimated = registry.get_sample_value("ndsc_audit_estimated_rmse", lab)
    # the estimate uses node 0's latents: better than knowing nothing (RMSE 1 for unit variance),
    # worse than decoding source 1's own latents
    assert decoded < estimated < 0.9, (decoded, estimated)
    x_hat = np.array([by_window[k].samples for k in range(10, 40)]).reshape(30, 2, -1)
    truth = np.array([gen.window(k)[1].ravel() for k in range(10, 40)])
    assert np.sqrt(np.mean((x_hat[:, 1] - truth) ** 2)) == __import__("pytest").approx(estimated, rel=1e-4)


def test_guarantee_a_slow_subscriber_never_stalls_decoding(gaussian_bundle):
    n = 800

    async def scenario():
        async with running_decoder(gaussian_bundle, deadline=1.0, subscriber_queue=48,
                                   max_batch=16) as (server, address, registry):
            fast = Subscription(address)
            slow_channel = grpc.aio.insecure_channel(address, options=[("grpc.http2.bdp_probe", 0),
                                                                   ("grpc.http2.lookahead_bytes", 1024)])
            slow = pb_grpc.FusionDecoderStub(slow_channel).Subscribe(pb.SubscribeRequest(include_samples=True))
            await fast.wait_started(registry, 2)  # the slow one never reads a message
            nodes = [edge_node(gaussian_bundle, i, address, source=SPEC.format(count=n)) for i in range(2)]
            await asyncio.gather(*(nd.run() for nd in nodes))
            while (registry.get_sample_value("ndsc_reconstructions_total", {"group": "default"}) or 0) < n:
                await asyncio.sleep(0.05)
            dropped = registry.get_sample_value("ndsc_subscriber_dropped_total")
            slow.cancel()
        await slow_channel.close()
        return await fast.finish(), registry, dropped

    items, registry, dropped = asyncio.run(scenario())
    assert len(items) == n  # the reading subscriber got every window despite the stalled one
    assert registry.get_sample_value("ndsc_reconstructions_total", {"group": "default"}) == n
    assert dropped > 0  # the stalled subscriber lost its oldest windows, counted
