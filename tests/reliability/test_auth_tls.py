"""Per-node credentials and TLS, over real sockets on loopback."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from fusion_decoder.auth import TokenBook
from ndsc.bundle import load_bundle
from ndsc.wire import pb, pb_grpc
from ndsc.wire.tls import channel_credentials
from tests.reliability.conftest import bearer, batch, encoded_windows, header, make_certificates
from tests.serving.conftest import raw_uplink
from tests.serving.conftest import Subscription, edge_node, running_decoder


def _tokens(tmp_path):
    path = tmp_path / "tokens"
    import hashlib

    path.write_text("# token group node source\n"
                    "tok-node0 default node0 0\n"
                    f"sha256:{hashlib.sha256(b'tok-node1').hexdigest()} default node1 1\n"
                    "tok-reader default * *\n")
    return TokenBook.load(path)


def test_guarantee_only_credentialed_nodes_stream_and_only_their_own_source(gaussian_bundle, tmp_path):
    bundle = load_bundle(gaussian_bundle)
    good = encoded_windows(gaussian_bundle, 1)[0][1]
    book = _tokens(tmp_path)

    async def scenario():
        async with running_decoder(gaussian_bundle, authorize=book, deadline=1.0) as (server, address, registry):
            sub = Subscription(address, include_samples=False)  # no token: refused
            nodes = [edge_node(gaussian_bundle, i, address, token=f"tok-node{i}", max_windows=20) for i in range(2)]
            counts = await asyncio.gather(*(n.run() for n in nodes))
            results = {
                "missing": await raw_uplink(address, [header(bundle, 0)]),
                "unknown": await raw_uplink(address, [header(bundle, 0)], bearer("guess")),
                # node0's credential used to send source 1's frames (as node0 or as node1)
                "other_source": await raw_uplink(address, [header(bundle, 1, node="node0"), batch([good[1]])],
                                                 bearer("tok-node0")),
                "other_node": await raw_uplink(address, [header(bundle, 1), batch([good[1]])], bearer("tok-node0")),
                "other_group": await raw_uplink(address, [header(bundle, 0, group="g2")], bearer("tok-node0")),
                "reader_uplink": await raw_uplink(address, [header(bundle, 0)], bearer("tok-reader")),
            }
            async with grpc.aio.insecure_channel(address) as ch:
                stub = pb_grpc.FusionDecoderStub(ch)
                audit = pb.AuditWindow(group="default", node_id="node1", source_index=1, bundle_id=bundle.bundle_id,
                                       window=0, shape=list(bundle.sources[1].input_shape))
                with pytest.raises(grpc.aio.AioRpcError) as audit_err:
                    await stub.Audit(audit, metadata=bearer("tok-node0"))
                with pytest.raises(grpc.aio.AioRpcError) as info_err:
                    await stub.GetModelInfo(pb.ModelInfoRequest())
                info = await stub.GetModelInfo(pb.ModelInfoRequest(), metadata=bearer("tok-reader"))
                reader = stub.Subscribe(pb.SubscribeRequest(group="default"), metadata=bearer("tok-reader"))
                while not registry.get_sample_value("ndsc_subscribers"):  # admitted (the tokenless one is not)
                    await asyncio.sleep(0.01)
                with pytest.raises(grpc.aio.AioRpcError) as sub_err:
                    async for _ in stub.Subscribe(pb.SubscribeRequest(group=""), metadata=bearer("tok-node0")):
                        pass
                reader.cancel()
        no_token_sub = await sub.call.code()
        await asyncio.gather(sub.task, return_exceptions=True)
        await sub.channel.close()
        return counts, results, registry, (audit_err.value, info_err.value, sub_err.value, no_token_sub), info

    counts, results, registry, errors, info = asyncio.run(scenario())
    assert counts == [20, 20]  # credentialed nodes streamed everything
    assert registry.get_sample_value("ndsc_reconstructions_total", {"group": "default"}) == 20
    code = {k: v[1] for k, v in results.items()}
    assert code == {"missing": grpc.StatusCode.UNAUTHENTICATED, "unknown": grpc.StatusCode.UNAUTHENTICATED,
                    "other_source": grpc.StatusCode.PERMISSION_DENIED,
                    "other_node": grpc.StatusCode.PERMISSION_DENIED,
                    "other_group": grpc.StatusCode.PERMISSION_DENIED,
                    "reader_uplink": grpc.StatusCode.PERMISSION_DENIED}
    assert all(v[0] == [] for v in results.values())  # not even a resume Ack: nothing about the decoder leaks
    audit_err, info_err, sub_err, no_token_sub = errors
    assert audit_err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info_err.code() == no_token_sub == grpc.StatusCode.UNAUTHENTICATED
    assert sub_err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.bundle_id == bundle.bundle_id

    def failures(rpc, reason):
        return registry.get_sample_value("ndsc_auth_failures_total", {"rpc": rpc, "reason": reason}) or 0

    assert failures("Uplink", "missing_token") == 1 and failures("Uplink", "unknown_token") == 1
    assert failures("Uplink", "wrong_binding") == 4
    assert failures("Audit", "wrong_binding") == 1 and failures("Subscribe", "wrong_binding") == 1
    assert failures("GetModelInfo", "missing_token") == 1 and failures("Subscribe", "missing_token") == 1
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "wrong_binding"}) == 4


def test_edge_with_a_wrong_token_stops_with_permission_denied(gaussian_bundle, tmp_path):
    from edge_encoder.node import EdgeFatalError

    book = _tokens(tmp_path)

    async def scenario():
        async with running_decoder(gaussian_bundle, authorize=book) as (server, address, registry):
            with pytest.raises(EdgeFatalError) as err:
                await edge_node(gaussian_bundle, 1, address, token="tok-node0", max_windows=3).run()
            return err.value

    assert asyncio.run(scenario()).code == grpc.StatusCode.PERMISSION_DENIED


def test_guarantee_mutual_tls_admits_only_clients_with_a_certificate_from_the_ca(gaussian_bundle, tmp_path):
    certs = make_certificates(tmp_path)
    bundle = load_bundle(gaussian_bundle)
    tls = (str(certs["server.pem"]), str(certs["server.key"]), str(certs["ca.pem"]))

    async def attempt(address, creds):
        channel = grpc.aio.secure_channel(address, creds) if creds else grpc.aio.insecure_channel(address)
        async with channel:
            try:
                await pb_grpc.FusionDecoderStub(channel).GetModelInfo(pb.ModelInfoRequest(), timeout=5)
                return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                return exc.code()

    async def scenario():
        async with running_decoder(gaussian_bundle, tls=tls, deadline=1.0) as (server, address, registry):
            nodes = [edge_node(gaussian_bundle, i, address, tls_ca=str(certs["ca.pem"]),
                               tls_cert=str(certs["client.pem"]), tls_key=str(certs["client.key"]), max_windows=10)
                     for i in range(2)]
            counts = await asyncio.gather(*(n.run() for n in nodes))
            outcomes = {
                "plaintext": await attempt(address, None),
                "no_client_cert": await attempt(address, channel_credentials(str(certs["ca.pem"]))),
                "untrusted_server": await attempt(address, channel_credentials(
                    str(certs["client.pem"]), str(certs["client.pem"]), str(certs["client.key"]))),
            }
        return counts, outcomes, registry

    counts, outcomes, registry = asyncio.run(scenario())
    assert counts == [10, 10]
    assert registry.get_sample_value("ndsc_reconstructions_total", {"group": "default"}) == 10
    assert outcomes == {k: grpc.StatusCode.UNAVAILABLE for k in outcomes}, outcomes
    assert header(bundle).header.bundle_id  # the header builder matches the bundle


def test_server_tls_without_client_certificates(gaussian_bundle, tmp_path):
    certs = make_certificates(tmp_path)

    async def scenario():
        tls = (str(certs["server.pem"]), str(certs["server.key"]), None)
        async with running_decoder(gaussian_bundle, tls=tls, deadline=1.0) as (server, address, registry):
            node = edge_node(gaussian_bundle, 0, address, tls_ca=str(certs["ca.pem"]), max_windows=5)
            n = await node.run()
        return n, registry

    n, registry = asyncio.run(scenario())
    assert n == 5
    assert registry.get_sample_value("ndsc_frames_total", {"group": "default", "node": "node0",
                                                           "status": "accepted"}) == 5
