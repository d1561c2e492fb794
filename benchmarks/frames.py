"""Whole-frame vs tile transport of stereo frames through the live serving path (loopback).

For one stereo bundle, the same pair (scikit-image's Motorcycle, or ``--root`` pairs) is
streamed by two real edge nodes to a real decoder three ways:

* ``tiles`` (baseline): the bundle as if it had no ``frame_stride``: each frame travels as
  tiles of the bundle's input shape, decoded tile by tile and stitched;
* ``whole``: one window per frame (padded to the stride, cropped back);
* ``whole+chunks``: whole frames with a small ``--chunk-bytes`` budget (several Frames per
  window), which must decode identically to ``whole``.

Printed per mode: payload bytes, bpp (8·bytes / pixels, both views), PSNR of the 8-bit
reconstruction, uplink frames and messages, encode seconds per megapixel (edge histogram),
and ratios against the tile baseline measured in the same run. Also checks that ``whole``
equals the offline evaluation (training.stereo_eval) on the same payloads.

    python benchmarks/frames.py --bundle runs/stereo-long/joint-lam1500-steps1500
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def variant(bundle: Path, out: Path, stride: int | None) -> Path:
    """A copy of ``bundle`` with ``frame_stride`` set to ``stride`` (None: tile mode)."""
    from ndsc.bundle import load_bundle, write_manifest

    shutil.copytree(bundle, out)
    b = load_bundle(out)
    write_manifest(out, modality=b.modality, sources=[dataclasses.replace(s, frame_stride=stride) for s in b.sources],
                   decoder=b.decoder, sample_rate=b.sample_rate, training_config=b.training_config,
                   evaluation=b.evaluation, extra=b.extra)
    return out


async def stream(bundle: Path, spec: str, chunk_bytes: int = 0) -> dict:
    """Two edge nodes → decoder; returns reconstructions by window plus counters."""
    import grpc
    from prometheus_client import CollectorRegistry

    from edge_encoder.node import EdgeNode
    from edge_encoder.settings import EdgeSettings
    from fusion_decoder.server import DecoderServer
    from ndsc.bundle import load_bundle
    from ndsc.wire import channel_options, pb, pb_grpc

    registry = CollectorRegistry()
    server = DecoderServer(load_bundle(bundle), "127.0.0.1:0", registry=registry, deadline=60.0, device="cpu")
    port = await server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address, options=channel_options())  # whole frames: MBs per reply
    call = pb_grpc.FusionDecoderStub(channel).Subscribe(pb.SubscribeRequest(include_samples=True))
    items: list = []

    async def collect():
        async for item in call:
            items.append(item)

    task = asyncio.create_task(collect())
    while (registry.get_sample_value("ndsc_subscribers") or 0) < 1:
        await asyncio.sleep(0.01)
    nodes = [EdgeNode(EdgeSettings(bundle=str(bundle), source_index=i, decoder=address, source=spec, fast=True,
                                   audit_every=0, max_chunk_bytes=chunk_bytes), CollectorRegistry())
             for i in range(2)]
    t0 = time.perf_counter()
    await asyncio.gather(*(n.run() for n in nodes))
    await server.stop()
    await asyncio.wait_for(task, 30)
    wall = time.perf_counter() - t0
    await channel.close()

    def value(name, **lb):
        return sum(registry.get_sample_value(name, {"group": "default", "node": f"node{i}", "source": str(i), **lb})
                   or 0.0 for i in range(2))

    encode = sum(n.metrics.encode_seconds._sum.get() for n in nodes)
    return {"items": sorted(items, key=lambda r: r.window), "wall_s": wall, "encode_s": encode,
            "bytes": value("ndsc_uplink_payload_bytes_total"), "messages": value("ndsc_uplink_messages_total"),
            "frames": sum(registry.get_sample_value("ndsc_frames_total", {"group": "default", "node": f"node{i}",
                                                                          "status": "accepted"}) or 0
                          for i in range(2))}


def reconstruct(items, hw: tuple[int, int], tiled: bool, repeat: int) -> np.ndarray:
    """(repeat, 2, 3, H, W) from the Reconstructions of ``repeat`` frames (tiles stitched in raster order)."""
    from ndsc.sources.images import stitch_tiles

    windows: dict[int, list] = {}
    for r in items:  # a whole frame may come as several messages (sample_offset)
        windows.setdefault(r.window, []).append(r)
    arrays = [np.concatenate([np.asarray(r.samples, np.float32) for r in sorted(rs, key=lambda r: r.sample_offset)])
              .reshape(tuple(rs[0].shape)) for _, rs in sorted(windows.items())]
    if not tiled:
        assert len(arrays) == repeat
        return np.stack(arrays)
    tiles = np.stack(arrays).reshape(repeat, -1, *arrays[0].shape)  # (repeat, tiles, 2, 3, th, tw)
    return np.stack([np.stack([stitch_tiles(f[:, i], hw) for i in range(f.shape[1])]) for f in tiles])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="a stereo bundle (conv2d-gdn encoders, dynamic H/W ONNX)")
    ap.add_argument("--chunk-bytes", type=int, default=4096, help="chunk budget of the whole+chunks run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the decoder")
    ap.add_argument("--repeat", type=int, default=3,
                    help="frames per node (the pair repeated): encode time is amortised over calls of one shape")
    args = ap.parse_args()

    import torch

    from ndsc.sources.images import skimage_pair
    from training.stereo_eval import StereoCodec, to_uint8
    from training.image_metrics import psnr

    torch.set_num_threads(args.threads)
    pair = skimage_pair()  # (2, 3, 500, 741): 741 is not a multiple of 16
    hw = pair.shape[-2:]
    pixels = 2 * hw[0] * hw[1] * args.repeat
    spec = f"stereo-skimage:#repeat={args.repeat}"
    with tempfile.TemporaryDirectory() as tmp:
        tiles = variant(Path(args.bundle), Path(tmp) / "tiles", None)
        whole = variant(Path(args.bundle), Path(tmp) / "whole", 16)
        runs = {"tiles": (asyncio.run(stream(tiles, spec)), True),
                "whole": (asyncio.run(stream(whole, spec)), False),
                f"whole+chunks({args.chunk_bytes} B)": (asyncio.run(stream(whole, spec, args.chunk_bytes)), False)}
        codec = StereoCodec(whole)
        payloads, _ = codec.encode(pair)
        offline = codec.decode(payloads, hw)
    base = runs["tiles"][0]
    base_psnr = None
    print(f"bundle {args.bundle}; Motorcycle pair {hw[0]}x{hw[1]} x 2 views x {args.repeat} frames; "
          "ratios vs tiles (same run)")
    print(f"{'mode':24s} {'bytes':>8s} {'bpp':>7s} {'PSNR dB':>8s} {'frames':>7s} {'msgs':>5s} "
          f"{'enc s/MP':>8s} {'bytes/tiles':>11s} {'ΔPSNR dB':>8s}")
    for name, (r, tiled) in runs.items():
        x_hat = reconstruct(r["items"], hw, tiled, args.repeat)
        db = psnr(pair, to_uint8(x_hat[0]))
        base_psnr = db if base_psnr is None else base_psnr
        print(f"{name:24s} {int(r['bytes']):8d} {8 * r['bytes'] / pixels:7.4f} {db:8.2f} {int(r['frames']):7d} "
              f"{int(r['messages']):5d} {r['encode_s'] / (pixels / 1e6):8.3f} {r['bytes'] / base['bytes']:11.3f} "
              f"{db - base_psnr:8.2f}")
        if not tiled:
            diff = float(np.abs(x_hat - offline[None]).max())
            same = [len(p) for p in payloads] == [int(v) for v in r["items"][0].payload_bytes]
            print(f"{'':24s} vs offline stereo_eval: max |Δx̂| = {diff:.2e}, payload bytes identical: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
