"""Stereo fixtures: real image files in every reader layout, cut from scikit-image's
Middlebury Motorcycle pair, and one tiny bundle trained on them through the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: (scene folder, layout files) — one small scene per layout; KITTI adds two sequences.
LAYOUTS = {
    "mb2014": ("im0.png", "im1.png"),
    "mb2005": ("view1.png", "view5.png"),
    "mb2001": ("im2.ppm", "im6.ppm"),
    "flat": ("left.png", "right.png"),
}
SCENE_HW = (80, 112)


def write_rgb(path: Path, image: np.ndarray) -> None:
    """Write (3, H, W) 0..255 as an 8-bit RGB file (format from the suffix)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0)).save(path)


def scene_crop(pair: np.ndarray, k: int, hw: tuple[int, int] = SCENE_HW) -> np.ndarray:
    """The k-th distinct region of the Motorcycle pair (same window in both views)."""
    top, left = 40 + 60 * (k % 6), 30 + 100 * (k % 6)
    return pair[..., top:top + hw[0], left:left + hw[1]]


@pytest.fixture(scope="session")
def motorcycle() -> np.ndarray:
    from ndsc.sources.images import skimage_pair

    return skimage_pair()


@pytest.fixture(scope="session")
def layouts_root(tmp_path_factory, motorcycle) -> Path:
    """A folder holding one pair per Middlebury layout and a KITTI tree of two sequences."""
    root = tmp_path_factory.mktemp("stereo_layouts")
    for k, (scene, files) in enumerate(LAYOUTS.items()):
        pair = scene_crop(motorcycle, k)
        for view, name in enumerate(files):
            write_rgb(root / scene / name, pair[view])
    for k, frame in enumerate(("000000_10", "000000_11", "000001_10")):
        pair = scene_crop(motorcycle, 4 + k // 2)
        write_rgb(root / "kitti" / "training" / "image_2" / f"{frame}.png", pair[0])
        write_rgb(root / "kitti" / "training" / "image_3" / f"{frame}.png", pair[1])
    return root


@pytest.fixture(scope="session")
def stereo_bundle(tmp_path_factory, layouts_root) -> tuple[Path, Path]:
    """(bundle, checkpoint) of the stereo-quick preset, trained for a few steps via the CLI."""
    from app.cli import main

    out = tmp_path_factory.mktemp("stereo_bundle")
    assert main(["stereo-train", "--root", str(layouts_root), "--out", str(out / "bundle"), "--preset",
                 "stereo-quick", "--steps", "8", "--checkpoint", str(out / "ckpt.pt")]) == 0
    return out / "bundle", out / "ckpt.pt"


@pytest.fixture(scope="session")
def tile_bundle(tmp_path_factory, stereo_bundle) -> Path:
    """The stereo bundle as written before ``frame_stride`` existed: its encoders are treated as
    fixed-size (no whole frames), so serving cuts image frames into tiles of its input shape."""
    import dataclasses
    import shutil

    from ndsc.bundle import load_bundle, write_manifest

    out = tmp_path_factory.mktemp("tile_bundle") / "bundle"
    shutil.copytree(stereo_bundle[0], out)
    b = load_bundle(out)
    assert all(s.frame_stride == 4 for s in b.sources)  # export records it for fully convolutional encoders
    write_manifest(out, modality=b.modality, sources=[dataclasses.replace(s, frame_stride=None) for s in b.sources],
                   decoder=b.decoder, sample_rate=b.sample_rate, training_config=b.training_config,
                   evaluation=b.evaluation, extra=b.extra)
    return out
