"""The right view binned live: tiles of syndromes against the decoded left, over the real feedback path.

A bundle exported by ``training.stereo_binning_export`` (4 × 4-block tiles, so that a test decodes
in seconds) codes a crop of scikit-image's pair whose right frame has a partial tile at its edge.
Real parts: the edge's :class:`StereoTileResponder` (NumPy only) answers the decoder's
:class:`StereoFrameDecoder` through the protobuf messages of the wire, and then two EdgeNodes
stream PNG files of the crop over gRPC to a DecoderServer that decodes the frame with feedback.
"""
from __future__ import annotations

import asyncio
import zlib

import numpy as np
import pytest

from ndsc.binning import SyndromeError
from ndsc.stereo_tiles import PRIOR_WORDS, split_plane
from ndsc.wire import pb

#: the crop: 32 × 56 px = 4 × 7 blocks: one full 4 × 4-block tile and one of 4 × 3 (padded)
ROWS, COLS = slice(200, 232), slice(300, 356)
QUALITY = "3"


@pytest.fixture(scope="module")
def crop(motorcycle) -> np.ndarray:
    return np.ascontiguousarray(motorcycle[:, :, ROWS, COLS])


@pytest.fixture(scope="module")
def tiled_bundle(tmp_path_factory, crop):
    from training.stereo_binning_export import export_stereo_binning_bundle

    return export_stereo_binning_bundle(tmp_path_factory.mktemp("tiled") / "bundle", tile_blocks=4,
                                        calibration_pair=crop)


def _edge_and_decoder(bundle_path, crop, device: str | None = None, quality: str = QUALITY):
    from edge_encoder.encoder import EdgeEncoder
    from edge_encoder.stereo_tiles import StereoTileResponder
    from fusion_decoder.runtime import JointDecoderRuntime
    from fusion_decoder.stereo_frames import StereoFrameDecoder
    from ndsc.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    encoders = [EdgeEncoder(bundle, i, quality=quality) for i in range(2)]
    latents = encoders[1].frame_symbols(crop[1]).reshape(bundle.sources[1].frame_latent_shape(crop[1].shape))
    runtime = JointDecoderRuntime(bundle, device="cpu")
    return bundle, encoders, latents, StereoTileResponder(bundle.sources[1], quality=quality), runtime, \
        StereoFrameDecoder(bundle, 1, runtime.decode_side_alone, device=device)


def _images_source(crop: np.ndarray, tmp_path, view: int) -> str:
    """An edge's ``images:`` source spec for one view of ``crop``, written as a PNG pair (once)."""
    from PIL import Image

    scene = tmp_path / "frames" / "crop"
    if not scene.is_dir():
        scene.mkdir(parents=True)
        for name, v in zip(("im0.png", "im1.png"), crop):
            Image.fromarray(np.ascontiguousarray(v.transpose(1, 2, 0)).astype(np.uint8)).save(scene / name)
    return f"images:{tmp_path / 'frames'}#view={view}"


def test_the_exported_bundle_declares_a_stereo_tiled_right_view(tiled_bundle):
    from ndsc.bundle import load_bundle
    from ndsc.stereo_tiles import STEREO_TILES, StereoTiles

    bundle = load_bundle(tiled_bundle)
    right = bundle.sources[1]
    assert right.syndrome and not bundle.sources[0].syndrome
    tiles = StereoTiles.of(right.binning)
    assert right.binning.conditional["kind"] == STEREO_TILES and tiles.tile_blocks == 4
    assert set(tiles.scales) == set(right.quality_names)  # the decoder's scales at every point
    top = right.quality_names[-1]  # the finest point's larger symbols get one more plane
    assert tiles.at(top).planes == tiles.planes + 1 == 8 and tiles.at(QUALITY) is tiles
    assert bundle.extra["binned_from"] != bundle.bundle_id


def _decode_through_messages(edge, decoder, state, left, window: int):
    """Drive ``decoder`` to the frame's symbols, each request answered by ``edge`` as protobuf messages;
    the symbols and the bits asked for (prior-coded planes: their bytes)."""
    asked = answered = 0
    for _ in range(5000):
        outcome = decoder.attempt(state, left)
        if outcome.symbols is not None:
            return outcome.symbols, asked, answered
        r = outcome.request
        assert not r.direct and r.end > r.first
        block = edge.answer(pb.SyndromeRequest(window=window, plane=r.plane, first_bit=r.first, end_bit=r.end))
        assert block is not None and block.crc32 == zlib.crc32(block.bits)
        prior = split_plane(r.plane, state.grid.count, state.tiles.planes)[2] == PRIOR_WORDS
        asked += 8 * len(block.bits) if prior else r.end - r.first
        answered += 8 * len(block.bits)
        state.requests += 1
        decoder.take(state, r, decoder.unpack(r, block.bits, state))
    pytest.fail("the frame did not decode")


def test_a_frame_decodes_losslessly_through_requests_and_every_bit_asked_for_is_counted(tiled_bundle, crop):
    bundle, encoders, latents, edge, runtime, decoder = _edge_and_decoder(tiled_bundle, crop)
    payload = edge.encode(7, latents)
    headers = runtime.entropy_decode(1, payload, crop[1].shape, QUALITY)
    assert len(headers) == 2 and len(headers[1].escape_positions) >= 192 * 4  # the padded tile knows its padding
    left = runtime.entropy_decode(0, encoders[0].encode_frame(crop[0]), crop[0].shape, QUALITY)
    state = decoder.start(headers, latents.shape, crop[1].shape, QUALITY, QUALITY)
    symbols, asked, answered = _decode_through_messages(edge, decoder, state, left, 7)
    assert np.array_equal(symbols.reshape(latents.shape), latents)  # lossless
    spent = sum(t.syndrome_bits + t.raw_bits + t.wasted_bits + t.prior_bits for t in state.results)
    assert spent == asked and answered < asked + 8 * state.requests  # bytes: each answer padded to a byte
    modes = [m for t in state.results for m in t.plane_modes]
    assert {"syndrome", "prior"} <= set(modes)  # per plane, whichever the decoder expects to be cheaper
    # the fallback: the frame's ANS payload, checked against every tile's plane checks
    direct = edge.answer(pb.SyndromeRequest(window=7, direct=True))
    assert direct.bits == encoders[1].encode_frame(crop[1])
    assert np.array_equal(decoder.check_direct(state, direct.bits), latents)
    # without the left view only the direct payload decodes the frame: asked for, checked as it
    # arrives (read_direct), and the attempt after it gives those symbols without decoding it again
    alone = decoder.start(headers, latents.shape, crop[1].shape, QUALITY, QUALITY)
    request = decoder.attempt(alone, None).request
    assert request is not None and request.direct
    decoder.take(alone, request, decoder.read_direct(alone, direct.bits))
    assert alone.direct_symbols is not None
    assert np.array_equal(decoder.attempt(alone, None).symbols.reshape(latents.shape), latents)
    edge.forget_below(8)
    assert edge.answer(pb.SyndromeRequest(window=7, plane=0, first_bit=0, end_bit=8)) is None and edge.settled


def test_a_payload_that_does_not_fit_the_frame_is_refused(tiled_bundle, crop):
    from ndsc.bundle import load_bundle
    from ndsc.stereo_tiles import StereoTiles

    bundle = load_bundle(tiled_bundle)
    tiles = StereoTiles.of(bundle.sources[1].binning)
    latents = np.zeros((192, 4, 7), np.int64)
    latents[5, 1, 2] = 500  # an escape
    payload = tiles.frame_payload(latents)
    headers = tiles.parse_payload(payload, latents.shape)
    assert 500 in headers[0].escape_values.tolist()
    for bad in (payload[:-1], payload + b"\0", b""):
        with pytest.raises(SyndromeError):
            tiles.parse_payload(bad, latents.shape)
    with pytest.raises(SyndromeError):
        tiles.parse_payload(payload, (192, 4, 12))  # a frame of three tiles
    forged = bytearray(payload)
    forged[4:6] = (0).to_bytes(2, "big")  # bytes: count (2), then the escape's position (2) and value (2)

    with pytest.raises(SyndromeError):  # a value the index range holds: the edge would not have escaped it
        tiles.parse_payload(bytes(forged), latents.shape)


def test_live_grpc_decodes_the_binned_right_view_to_what_the_direct_payload_gives(tiled_bundle, crop, tmp_path):
    from ndsc.bundles import STEREO_BUNDLE, default_bundle
    from tests.serving.conftest import edge_node, running_decoder, samples
    from tests.stereo.test_shipped_bundle import WholeFrameSubscription
    from training.stereo_eval import StereoCodec

    async def scenario():
        async with running_decoder(tiled_bundle) as (server, address, registry):
            sub = WholeFrameSubscription(address)
            await sub.wait_started(registry)
            nodes = [edge_node(tiled_bundle, i, address, source=_images_source(crop, tmp_path, view=i),
                               quality=QUALITY) for i in range(2)]
            counts = await asyncio.wait_for(asyncio.gather(*(n.run() for n in nodes)), 300)
            assert counts == [1, 1]
            metric = lambda name, **labels: registry.get_sample_value(name, labels)  # noqa: E731
            assert metric("ndsc_syndrome_windows_total", group="default", source="1", outcome="decoded") == 1
            assert metric("ndsc_syndrome_bits_total", group="default", source="1", kind="requested") > 0
            assert not metric("ndsc_syndrome_bits_total", group="default", source="1", kind="direct")
        return await sub.finish()

    items = asyncio.run(scenario())
    # the bundle it was exported from: the same encoders and decoder, the right view ANS-coded
    codec = StereoCodec(default_bundle(STEREO_BUNDLE), quality=QUALITY)
    payloads, _ = codec.encode(crop)
    offline = codec.decode(payloads, crop.shape[-2:])  # the right view from its ANS payload: the same symbols
    live = np.concatenate([samples(r) for r in sorted(items, key=lambda r: r.sample_offset)]).reshape(offline.shape)
    np.testing.assert_allclose(live, offline, atol=1e-3)


def test_a_forged_prior_coded_plane_is_refused_as_it_arrives_and_the_frame_still_decodes_exactly(
        tiled_bundle, crop, tmp_path):
    """A right camera that answers a prior-coded plane with altered words: the decoder decodes and checks
    them as they arrive, ends that stream with INVALID_ARGUMENT bad_syndrome (counted), and asks again on
    the camera's next stream; answered truly there, the frame decodes as if nothing had happened."""
    import grpc

    from ndsc.sources import open_source
    from ndsc.stereo_tiles import StereoTiles
    from ndsc.wire import pb_grpc
    from tests.serving.conftest import edge_node, running_decoder
    from tests.stereo.test_shipped_bundle import WholeFrameSubscription

    left_spec = _images_source(crop, tmp_path, view=0)
    bundle, encoders, latents, edge, _, _ = _edge_and_decoder(tiled_bundle, crop)
    window = next(iter(open_source(left_spec, 0, bundle.sources[0].input_shape).windows())).index
    tiles = StereoTiles.of(bundle.sources[1].binning).at(QUALITY)
    payload = edge.encode(window, latents)
    header = pb.UplinkMessage(header=pb.StreamHeader(
        group="default", node_id="right", source_index=1, bundle_id=bundle.bundle_id, incarnation=3,
        input_shape=list(crop[1].shape), latent_shape=list(latents.shape), quality=QUALITY))
    frame = pb.UplinkMessage(batch=pb.FrameBatch(first_seq=1, first_window=window, first_capture_us=1, frames=[
        pb.Frame(crc32=zlib.crc32(payload), payload=payload)]))

    def is_prior(r: pb.SyndromeRequest) -> bool:
        return not r.direct and split_plane(r.plane, tiles.grid(latents.shape).count, tiles.planes)[2] == PRIOR_WORDS

    async def answer_until_refused_or_settled(call, forge: bool) -> grpc.aio.AioRpcError | None:
        while True:
            try:
                ack = await asyncio.wait_for(call.read(), 120)
            except grpc.aio.AioRpcError as refused:
                return refused
            for r in getattr(ack, "requests", ()):
                block = edge.answer(r)
                if forge and is_prior(r) and len(block.bits) >= 4:
                    bits = bytearray(block.bits)
                    bits[len(bits) // 2] ^= 0x10
                    block = pb.SyndromeBlock(window=block.window, plane=block.plane, first_bit=block.first_bit,
                                             end_bit=block.end_bit, bits=bytes(bits), crc32=zlib.crc32(bits))
                await call.write(pb.UplinkMessage(syndrome=pb.SyndromeReply(blocks=[block])))
            if ack.settled_below > window:  # decoded: the camera may forget the frame
                return None

    async def scenario():
        async with running_decoder(tiled_bundle) as (server, address, registry):
            sub = WholeFrameSubscription(address)
            await sub.wait_started(registry)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.FusionDecoderStub(channel)
                call = stub.Uplink()
                await call.write(header)
                await call.read()
                await call.write(frame)
                assert await asyncio.wait_for(edge_node(tiled_bundle, 0, address, source=left_spec,
                                                        quality=QUALITY).run(), 60) == 1
                refused = await answer_until_refused_or_settled(call, True)
                again = stub.Uplink()
                await again.write(header)  # the same incarnation: a reconnect, the request comes again
                assert await answer_until_refused_or_settled(again, False) is None
                await sub.wait_for(1, timeout=30)
                again.cancel()
        return refused, registry, await sub.finish()

    refused, registry, items = asyncio.run(scenario())
    assert refused is not None and refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prior" in refused.details() and ("contradicts its check" in refused.details()
                                             or "does not decode" in refused.details()
                                             or "words left" in refused.details())
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "bad_syndrome"}) == 1
    labels = {"group": "default", "source": "1"}
    assert registry.get_sample_value("ndsc_syndrome_windows_total", {**labels, "outcome": "decoded"}) == 1
    assert not registry.get_sample_value("ndsc_syndrome_windows_total", {**labels, "outcome": "timeout"})
    assert [r.window for r in items] == [window] and list(items[0].present) == [True, True]


def test_reference_vector_of_a_stereo_tiled_frame():
    """docs/bitstream.md §8 on a frame small enough to check by hand: C = 4, t = 2 (n = 16), B = 3,
    latents (4, 3, 3): four tiles, three of them padded, with escapes."""
    from dataclasses import replace

    from ndsc.binning import pack_bits
    from ndsc.stereo_tiles import StereoTiles, flat_plane, split_plane, stereo_tiles_record

    checks = ((5, 10, 11), (0, 3, 4), (2, 8, 9), (6, 12, 15), (1, 10, 13), (8, 12, 15), (0, 7, 14), (2, 3, 6),
              (4, 12, 14), (0, 1, 9), (5, 7, 13), (3, 11, 15), (2, 4, 13), (6, 10, 11), (7, 8, 9), (1, 5, 14))
    tiles = StereoTiles.of(replace(stereo_tiles_record(4, 3, {"": [1.0] * 4}, tile_blocks=2), checks=checks))
    latents = np.array([-4, 3, 1, -1, -3, 4, 2, 0, -2, -4, 9, 1, -1, -3, 4, 2, 0, -2, -4, 3, 1, -1, -3, 4, 2, 0,
                        -2, -4, 3, 1, -1, -3, 4, 2, 0, -6]).reshape(4, 3, 3)
    payload = tiles.frame_payload(latents)
    assert payload.hex() == ("000100050009d4474bf979ab"  # tile 0: 1 escape (position 5, value 9), 3 CRC-16s
                             "00040002000400060004000a0004000e00040000e61564a4"  # tile 1: 4 escapes (value 4)
                             "00000000000082b1"  # tile 2: no escape, planes 1 and 2 all zero
                             "0001000cfffa82b182b18108")  # tile 3: one escape (position 12, value −6)
    grid = tiles.grid(latents.shape)
    tile0 = tiles.encode_tile(grid.tile(latents, 0))
    answers = [pack_bits(tile0.accumulated[k][tiles.spec.order][:16]).hex() for k in range(3)]
    assert answers == ["096f", "48ca", "696c"]  # "tile 0, plane k, bits [0, 16)"
    assert [pack_bits(tile0.planes[k]).hex() for k in range(3)] == ["bbbb", "cccc", "dddd"]  # its planes' own bits
    assert flat_plane(3, 1, 0, 4, 3) == 10 and flat_plane(3, 2, 1, 4, 3) == 23 and flat_plane(0, 0, 2, 4, 3) == 24
    assert split_plane(23, 4, 3) == (3, 2, 1) and split_plane(35, 4, 3) == (3, 2, 2)
    with pytest.raises(SyndromeError):
        split_plane(36, 4, 3)


def test_the_live_decoders_side_equals_the_offline_benchmarks(tiled_bundle, crop):
    """The candidates' centres the live decoder computes per tile (the tile's columns only) are the
    benchmark's (the whole strip through the right encoder): live and offline decode the same model."""
    from tests.conftest import load_benchmark

    bench = load_benchmark("stereo_binning")
    bundle, encoders, latents, edge, runtime, decoder = _edge_and_decoder(tiled_bundle, crop)
    left_symbols = runtime.entropy_decode(0, encoders[0].encode_frame(crop[0]), crop[0].shape, QUALITY)
    left = runtime.decode_side_alone(left_symbols, crop[0].shape, QUALITY)
    grid = decoder.tiles.grid(latents.shape)
    live = decoder.centres(np.asarray(left, np.float64), grid, 0, QUALITY)
    gain = np.asarray(encoders[1].gain, np.float64)
    offline = bench.candidate_centres(left, 0, crop.shape[2], [0], encoders[1], gain, decoder.tiles.disparity_step,
                                      tile_blocks=4)[:, 0]
    np.testing.assert_array_equal(live, offline)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="no CUDA device"))])
def test_the_torch_path_decodes_the_frame_losslessly(tiled_bundle, crop, device):
    """Likelihoods in torch float32 (and, on a GPU, BP too: fusion_decoder.belief_torch): the GPU's
    path, run on the CPU where there is none; at the finest point, whose symbols take 8 planes."""
    from ndsc.bundle import load_bundle

    top = load_bundle(tiled_bundle).sources[1].quality_names[-1]
    bundle, encoders, latents, edge, runtime, decoder = _edge_and_decoder(tiled_bundle, crop, device, top)
    payload = edge.encode(3, latents)
    headers = runtime.entropy_decode(1, payload, crop[1].shape, top)
    assert len(payload) == 2 * (2 + 8 * 2) + 4 * sum(len(h.escape_positions) for h in headers) - 4 * 192 * 4
    left = runtime.entropy_decode(0, encoders[0].encode_frame(crop[0]), crop[0].shape, top)
    state = decoder.start(headers, latents.shape, crop[1].shape, top, top)
    assert state.tiles.planes == 8
    symbols, asked, _ = _decode_through_messages(edge, decoder, state, left, 3)
    assert np.array_equal(symbols.reshape(latents.shape), latents) and asked > 0
