"""The shipped stereo bundle: intact and small, served live exactly as evaluated offline, and the demo.

Real parts only: two EdgeNodes (onnxruntime) send scikit-image's whole Motorcycle frames over
gRPC on loopback to a DecoderServer; the reference is the offline whole-image evaluation
(``training.stereo_eval``), which ``ndsc stereo-eval`` and the benchmark report use.
"""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ndsc.bundle import load_bundle
from ndsc.bundles import STEREO_BUNDLE, default_bundle
from app.demo_stereo import MAX_MESSAGE
from tests.conftest import REPO, assert_images_match_offline
from tests.serving.conftest import Subscription, edge_node, running_decoder, samples


@pytest.fixture(scope="module")
def shipped():
    return load_bundle(default_bundle(STEREO_BUNDLE))


def test_shipped_stereo_bundle_is_intact_small_and_variable_rate(shipped):
    assert shipped.modality == "stereo" and shipped.n_sources == 2
    assert sum(p.stat().st_size for p in shipped.path.iterdir()) < 20_000_000
    assert len(shipped.quality_names) >= 4  # one bundle gives the R–D curve
    assert all(s.frame_stride == 8 for s in shipped.sources)  # whole frames on the wire
    assert shipped.training_config["model"]["joint_decoder"] is True
    # the learned view fusion ships trained, on the training scenes only
    assert shipped.decoder["args"]["refiner_hidden"] > 0 and shipped.decoder["args"]["side_information"]
    fusion = shipped.evaluation["view_fusion"]
    assert fusion["scenes"] == shipped.extra["data_info"]["train_scenes"]
    assert not set(fusion["scenes"]) & set(shipped.extra["data_info"]["test_scenes"])


class WholeFrameSubscription(Subscription):
    """A Subscribe stream that accepts messages as large as the decoder sends (a whole frame's slice
    may exceed gRPC's 4 MB default)."""

    def __init__(self, address: str):
        super().__init__(address, include_samples=True, f32le=True,
                         channel_options=[("grpc.max_receive_message_length", MAX_MESSAGE)])


def _served(bundle_path, quality: str) -> list:
    async def scenario():
        async with running_decoder(bundle_path) as (server, address, registry):
            sub = WholeFrameSubscription(address)
            await sub.wait_started(registry)
            nodes = [edge_node(bundle_path, i, address, source=f"stereo-skimage:#view={i}", quality=quality)
                     for i in range(2)]
            counts = await asyncio.gather(*(n.run() for n in nodes))
            assert counts == [1, 1]  # one whole frame per camera
        return await sub.finish()

    return asyncio.run(scenario())


def test_a_skimage_pair_through_live_grpc_equals_the_offline_evaluation(shipped, motorcycle):
    from training.stereo_eval import StereoCodec

    quality = shipped.quality_names[-1]  # the finest point: the most symbols that could differ
    codec = StereoCodec(shipped.path, quality=quality)
    payloads, _ = codec.encode(motorcycle)
    offline = codec.decode(payloads, motorcycle.shape[-2:])
    items = _served(shipped.path, quality)
    items.sort(key=lambda r: r.sample_offset)
    assert {r.window for r in items} == {0}
    assert list(items[0].shape) == [2, *motorcycle.shape[1:]]  # the whole frame, cropped back
    assert list(items[0].payload_bytes) == [len(p) for p in payloads]  # the same bytes on the wire
    live = np.concatenate([samples(r) for r in items]).reshape(offline.shape)
    assert_images_match_offline(live, offline)


def test_stereo_eval_on_skimage_runs_from_the_shipped_bundle_and_its_lowest_point_meets_the_seed_target(capsys):
    from app.cli import main

    assert main(["stereo-eval", "--images", "skimage", "--quality", "1"]) == 0
    text = capsys.readouterr().out
    rows = re.findall(r"skimage-motorcycle\s+(left|right)\s+\d+\s+\S+\s+(\S+)\s+(\S+)\s+(\S+)", text)
    assert [r[0] for r in rows] == ["left", "right"]
    for _, bpd, psnr, ms_ssim in rows:  # ≥ 30 dB at ≤ 0.4 bit/dim, each view
        assert 0 < float(bpd) <= 0.4 and float(psnr) >= 30 and 0.9 < float(ms_ssim) <= 1


def test_stereo_demo_shows_psnr_per_view_and_ends_cleanly(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "ndsc", "demo", "--stereo", "--duration", "12"],
                         capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped 3 processes cleanly" in out.stdout and out.stderr == ""
    views = re.findall(r"left PSNR ([\d.]+) dB, MS-SSIM ([\d.]+); right PSNR ([\d.]+) dB, MS-SSIM ([\d.]+)",
                       out.stdout)
    assert views, out.stdout  # at least one whole frame decoded and measured per view
    assert all(float(v) > 20 for v in views[-1][0::2]) and all(0 < float(v) <= 1 for v in views[-1][1::2])
    assert list(tmp_path.glob("ndsc-demo-*")) == []  # the temporary folder is gone
