"""An image frame through the live serving path in tile mode (a bundle without ``frame_stride``):
two edge nodes → gRPC on loopback → joint decoder. Whole frames: test_whole_frames.py."""
from __future__ import annotations

import asyncio

import numpy as np

from edge_encoder.encoder import EdgeEncoder
from fusion_decoder.runtime import JointDecoderRuntime
from ndsc.bundle import load_bundle
from ndsc.sources import open_source
from ndsc.sources.images import find_pairs, read_pair, stitch_tiles
from tests.conftest import assert_images_match_offline
from tests.serving.conftest import Subscription, edge_node, labels, running_decoder, x_hat_by_window


def test_a_stereo_frame_is_reconstructed_through_grpc_exactly_as_offline(tile_bundle, layouts_root):
    bundle_path = tile_bundle
    spec = f"images:{layouts_root}#scenes=flat"

    async def scenario():
        async with running_decoder(bundle_path) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            nodes = [edge_node(bundle_path, i, address, source=spec) for i in range(2)]
            counts = await asyncio.gather(*(n.run() for n in nodes))
        return counts, await sub.finish(), registry

    counts, items, registry = asyncio.run(scenario())
    bundle = load_bundle(bundle_path)
    frame = read_pair(next(p for p in find_pairs(layouts_root) if p.scene == "flat"))  # (2, 3, 80, 112)
    tiles = [[w.data for w in open_source(spec, i, bundle.sources[i].input_shape).windows()] for i in range(2)]
    assert counts == [len(tiles[0])] * 2 == [4, 4]  # an 80×112 frame is 2×2 tiles of 64×64

    # Offline: the same encoders and decoder without the network.
    encoders = [EdgeEncoder(bundle, i) for i in range(2)]
    payloads = [[encoders[i].encode(tiles[i][k]) for i in range(2)] for k in range(4)]
    offline, _ = JointDecoderRuntime(bundle, device="cpu").decode_batch(payloads)

    by_window = x_hat_by_window(items)
    assert sorted(by_window) == [0, 1, 2, 3]
    for r in items:
        assert list(r.present) == [True, True]
        assert list(r.payload_bytes) == [len(p) for p in payloads[r.window]]
    served = np.stack([by_window[k] for k in range(4)])  # (tiles, 2, 3, 64, 64)
    assert_images_match_offline(served, offline)
    for i in range(2):
        reconstruction = stitch_tiles(served[:, i], frame.shape[-2:])
        assert reconstruction.shape == frame[i].shape
        coded = sum(len(row[i]) for row in payloads)
        assert registry.get_sample_value("ndsc_uplink_payload_bytes_total", labels(node=f"node{i}", source=i)) == coded
