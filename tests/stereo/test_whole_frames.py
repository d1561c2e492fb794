"""Whole-frame transport: a fully convolutional stereo bundle serves frames of any size.

Real parts only: two EdgeNodes (onnxruntime) stream over gRPC on loopback to a DecoderServer,
frames are crops of scikit-image's Motorcycle pair whose sizes are not multiples of the
encoder stride, and the reference is the offline evaluation path (training.stereo_eval).
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from ndsc.wire import FrameData, crc32, pack_batch, pb, pb_grpc, split_payload, unpack_batch
from tests.serving.conftest import Subscription, edge_node, labels, raw_uplink, running_decoder
from tests.stereo.conftest import write_rgb

#: scene → (top, left, H, W) crop of the Motorcycle pair; sizes the encoder stride (4) does not divide
SCENES = {"a": (60, 200, 90, 130), "b": (200, 330, 70, 100)}


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory, motorcycle) -> Path:
    """Two flat-layout scenes of different sizes: each node streams two frames of two shapes."""
    root = tmp_path_factory.mktemp("whole_frames")
    for scene, (top, left, h, w) in SCENES.items():
        for view, name in enumerate(("left.png", "right.png")):
            write_rgb(root / scene / name, motorcycle[view, :, top:top + h, left:left + w])
    return root


@pytest.fixture(scope="module")
def offline(stereo_bundle, frames_root):
    """Per scene: (pair, payloads, x_hat) from the offline whole-image path (stereo_eval)."""
    from ndsc.sources.images import find_pairs, read_pair
    from training.stereo_eval import StereoCodec

    codec = StereoCodec(stereo_bundle[0])
    out = {}
    for pair_files in find_pairs(frames_root):
        pair = read_pair(pair_files)
        payloads, _ = codec.encode(pair)
        out[pair_files.scene] = (pair, payloads, codec.decode(payloads, pair.shape[-2:]))
    return out


def _stream(bundle_path, frames_root, **node_settings):
    async def scenario():
        async with running_decoder(bundle_path, **node_settings.pop("decoder", {})) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            async with grpc.aio.insecure_channel(address) as channel:
                info = await pb_grpc.FusionDecoderStub(channel).GetModelInfo(pb.ModelInfoRequest())
            nodes = [edge_node(bundle_path, i, address, source=f"images:{frames_root}", **node_settings)
                     for i in range(2)]
            counts = await asyncio.gather(*(n.run() for n in nodes))
        return counts, nodes, info, await sub.finish(), registry

    return asyncio.run(scenario())


def x_hat_by_window(items) -> dict[int, np.ndarray]:
    """Reconstructions by window, joining the sample slices of windows sent in several messages."""
    parts: dict[int, list] = {}
    for r in items:
        parts.setdefault(r.window, []).append(r)
    out = {}
    for window, rs in parts.items():
        rs.sort(key=lambda r: r.sample_offset)
        assert [r.sample_offset for r in rs] == list(np.cumsum([0] + [len(r.samples) for r in rs[:-1]]))
        out[window] = np.concatenate([np.asarray(r.samples, np.float32) for r in rs]).reshape(tuple(rs[0].shape))
    return out


def _assert_served_equals_offline(items, offline):
    by_window = x_hat_by_window(items)
    assert sorted(by_window) == [0, 1]
    for window, scene in enumerate(sorted(SCENES)):
        pair, payloads, x_hat = offline[scene]
        r = next(r for r in items if r.window == window)  # metadata: the same in every slice
        assert list(r.shape) == [2, 3, *SCENES[scene][2:]]  # the frame's own size, cropped back
        assert list(r.present) == [True, True]
        assert list(r.payload_bytes) == [len(p) for p in payloads]
        np.testing.assert_allclose(by_window[window], x_hat, rtol=0, atol=1e-3)


def test_whole_frames_of_any_size_decode_exactly_as_the_offline_evaluation(stereo_bundle, frames_root, offline):
    counts, nodes, info, items, registry = _stream(stereo_bundle[0], frames_root, audit_every=1)
    assert counts == [2, 2]  # one window per frame, not tiles
    assert [s.frame_stride for s in info.sources] == [4, 4]
    _assert_served_equals_offline(items, offline)
    for i, node in enumerate(nodes):
        assert node.metrics.streams._value.get() == 2  # the second frame size opened a second stream
        assert node.metrics.chunked_windows._value.get() == 0
        coded = sum(len(offline[s][1][i]) for s in SCENES)
        assert registry.get_sample_value("ndsc_uplink_payload_bytes_total", labels(node=f"node{i}", source=i)) == coded
        samples = sum(3 * h * w for _, _, h, w in SCENES.values())
        assert registry.get_sample_value("ndsc_uplink_samples_total", labels(source=i)) == samples
        assert registry.get_sample_value("ndsc_bits_per_sample", labels(source=i)) == pytest.approx(8 * coded / samples)
        # whole raw frames are audited against the whole reconstructed frames
        assert registry.get_sample_value("ndsc_audit_windows_total", labels(source=i)) == 2
        assert registry.get_sample_value("ndsc_audit_rejected_total", {"reason": "shape_differs"}) is None


def test_a_payload_over_the_chunk_budget_travels_in_chunks_and_decodes_identically(stereo_bundle, frames_root,
                                                                                   offline, tmp_path):
    budget = 48  # bytes per chunk: every payload here is larger
    # the decoder's message limit is also small, so each whole reconstruction comes in several messages
    limit = 96 * 1024
    counts, nodes, _, items, registry = _stream(stereo_bundle[0], frames_root, max_chunk_bytes=budget,
                                                decoder={"state_dir": str(tmp_path / "state"),
                                                         "max_message_bytes": limit})
    assert counts == [2, 2]
    _assert_served_equals_offline(items, offline)
    assert len([r for r in items if r.window == 0]) == -(-2 * 3 * 90 * 130 // ((limit - 64 * 1024) // 4)) > 1
    for i, node in enumerate(nodes):
        sizes = [len(offline[s][1][i]) for s in sorted(SCENES)]
        assert min(sizes) > budget
        assert node.metrics.chunked_windows._value.get() == 2
        frames = sum(-(-n // budget) for n in sizes)
        assert registry.get_sample_value("ndsc_frames_total", labels(node=f"node{i}", status="accepted")) == frames
        assert registry.get_sample_value("ndsc_uplink_payload_bytes_total",
                                         labels(node=f"node{i}", source=i)) == sum(sizes)
        assert registry.get_sample_value("ndsc_incomplete_chunk_sets_total", labels(source=i)) is None


def test_a_group_whose_views_differ_in_frame_shape_is_refused_while_another_group_streams(
        stereo_bundle, frames_root, offline):
    from edge_encoder.node import EdgeFatalError

    bundle_path = stereo_bundle[0]

    async def scenario():
        async with running_decoder(bundle_path) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            # group "bad": the left camera sends scene a's size for window 0 first ...
            await edge_node(bundle_path, 0, address, group="bad", source=f"images:{frames_root}#scenes=a").run()
            # ... then the right camera sends scene b's size for window 0, while group "ok" streams
            bad = edge_node(bundle_path, 1, address, group="bad", source=f"images:{frames_root}#scenes=b")
            ok = [edge_node(bundle_path, i, address, group="ok", source=f"images:{frames_root}") for i in range(2)]
            results = await asyncio.gather(bad.run(), *(n.run() for n in ok), return_exceptions=True)
        return results, await sub.finish(), registry

    results, items, registry = asyncio.run(scenario())
    assert isinstance(results[0], EdgeFatalError) and results[0].code == grpc.StatusCode.FAILED_PRECONDITION
    assert results[1:] == [2, 2]
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "frame_shape_mismatch"}) == 1
    assert registry.get_sample_value("ndsc_frames_total",
                                     labels(group="bad", node="node1", status="frame_shape_mismatch")) == 1
    _assert_served_equals_offline([r for r in items if r.group == "ok"], offline)
    # the refused view is estimated from the other, at the shape its group holds
    (bad_window,) = [r for r in items if r.group == "bad"]
    assert list(bad_window.present) == [True, False] and list(bad_window.shape) == [2, 3, *SCENES["a"][2:]]


def test_headers_are_checked_and_an_incomplete_chunk_set_is_decoded_with_its_source_estimated(
        stereo_bundle, offline):
    from ndsc.bundle import load_bundle

    bundle = load_bundle(stereo_bundle[0])
    pair, payloads, _ = offline["a"]
    h, w = pair.shape[-2:]

    def header(source, shape, latent=None, group="g"):
        latent = latent or bundle.sources[source].frame_latent_shape(shape)
        return pb.UplinkMessage(header=pb.StreamHeader(
            group=group, node_id=f"node{source}", source_index=source, bundle_id=bundle.bundle_id,
            input_shape=list(shape), latent_shape=list(latent), incarnation=7))

    def chunked(payload, keep):
        parts = split_payload(payload, -(-len(payload) // 2))  # two chunks
        frames = [FrameData(1 + j, 0, 1_700_000_000_000_000, crc32(p), p, j, len(parts))
                  for j, p in enumerate(parts)][:keep]
        return pb.UplinkMessage(batch=pack_batch(frames))

    def one_chunk(chunk, chunks):
        return pb.UplinkMessage(batch=pack_batch([FrameData(1, 0, 0, crc32(b"x"), b"x", chunk, chunks)]))

    async def scenario():
        async with running_decoder(stereo_bundle[0], max_frame_area=200 * 200, max_chunks=8) as (
                server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            too_large = await raw_uplink(address, [header(0, (3, 201, 200))])
            bad_latent = await raw_uplink(address, [header(0, (3, h, w), latent=(8, 1, 1))])
            bad_index = await raw_uplink(address, [header(0, (3, h, w), group="x"), one_chunk(2, 2)])
            too_many = await raw_uplink(address, [header(0, (3, h, w), group="y"), one_chunk(0, 9)])
            assert (bad_index[1], too_many[1]) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                   grpc.StatusCode.RESOURCE_EXHAUSTED)
            full = await raw_uplink(address, [header(1, (3, h, w)), chunked(payloads[1], keep=2)])
            partial = await raw_uplink(address, [header(0, (3, h, w)), chunked(payloads[0], keep=1)])
        return (too_large, bad_latent, full, partial), await sub.finish(), registry

    (too_large, bad_latent, full, partial), items, registry = asyncio.run(scenario())
    assert too_large[1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert bad_latent[1] == grpc.StatusCode.INVALID_ARGUMENT
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "frame_too_large"}) == 1
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "shape_mismatch"}) == 1
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "bad_chunk"}) == 1
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "too_many_chunks"}) == 1
    assert full[0][-1] == 2 and partial[0][-1] == 1  # acks per Frame message (chunk), not per window
    (r,) = items
    assert list(r.present) == [False, True] and list(r.shape) == [2, 3, h, w]
    assert registry.get_sample_value("ndsc_incomplete_chunk_sets_total", labels(group="g", source=0)) == 1


def test_chunks_pack_and_unpack_with_their_window():
    frames = [FrameData(5, 3, 10, 0, b"a"), FrameData(6, 4, 20, 0, b"b0", 0, 3), FrameData(7, 4, 20, 0, b"b1", 1, 3),
              FrameData(8, 4, 20, 0, b"b2", 2, 3), FrameData(9, 6, 30, 0, b"c1", 1, 2)]
    assert list(unpack_batch(pack_batch(frames))) == frames
    assert split_payload(b"abcdefg", 3) == [b"abc", b"def", b"g"] and split_payload(b"ab", 3) == [b"ab"]


def test_a_chunk_set_split_by_a_decoder_restart_completes_from_the_journal(stereo_bundle, offline, tmp_path):
    """Chunk 0 was acknowledged (journaled) before the decoder died; the node resumes after it."""
    from fusion_decoder.journal import Journal, SessionRow
    from ndsc.bundle import load_bundle

    bundle = load_bundle(stereo_bundle[0])
    pair, payloads, x_hat = offline["a"]
    shape = (3, *pair.shape[-2:])
    parts = split_payload(payloads[0], -(-len(payloads[0]) // 2))
    frames = [FrameData(1 + j, 0, 1_700_000_000_000_000, crc32(p), p, j, 2) for j, p in enumerate(parts)]
    journal = Journal(tmp_path / "state")  # what the first decoder process committed before its Ack of seq 1
    journal.record_frames(SessionRow("g", "node0", 0, 7, 1, 0), 0, frames[:1], shape)
    journal.close()

    def header(source):
        return pb.UplinkMessage(header=pb.StreamHeader(
            group="g", node_id=f"node{source}", source_index=source, bundle_id=bundle.bundle_id,
            input_shape=list(shape), latent_shape=list(bundle.sources[source].frame_latent_shape(shape)),
            incarnation=7))

    async def scenario():
        async with running_decoder(stereo_bundle[0], state_dir=str(tmp_path / "state")) as (server, address, registry):
            sub = Subscription(address)
            await sub.wait_started(registry)
            resumed = await raw_uplink(address, [header(0), pb.UplinkMessage(batch=pack_batch(frames[1:]))])
            other = FrameData(1, 0, 1_700_000_000_000_000, crc32(payloads[1]), payloads[1])
            await raw_uplink(address, [header(1), pb.UplinkMessage(batch=pack_batch([other]))])
        return resumed, await sub.finish(), registry

    resumed, items, registry = asyncio.run(scenario())
    assert resumed[0] == [1, 2] and resumed[1] == grpc.StatusCode.OK  # resume after chunk 0, then ack chunk 1
    (r,) = items
    assert list(r.present) == [True, True] and list(r.payload_bytes) == [len(p) for p in payloads]
    np.testing.assert_allclose(x_hat_by_window(items)[0], x_hat, rtol=0, atol=1e-3)
    assert registry.get_sample_value("ndsc_journal_restored_frames_total") == 1
