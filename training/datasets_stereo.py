"""Stereo data set (kind ``"stereo"``): scene-level splits, aligned random crops, full test images.

Windows are (n, N=2, 3, h, w) float32 in 0..255. Training windows are random crops
with the **same** window in both views (so the views stay registered as the cameras
saw them); validation and test windows are the non-overlapping crop-sized tiles of the
held-out scenes (for the generic ``ndsc eval`` and the ONNX parity check); the crop is
also the bundle's ``input_shape``, the tile an edge node sends per window. The
figures that matter — whole images, padded to the stride and cropped back — come from
:func:`full_pairs` and ``training.stereo_eval``.

params (``DataConfig.params``):
    root: folder with stereo pairs in any layout ``ndsc.sources.images`` reads (required).
    crop: height of training crops and val/test tiles (multiple of 16).
    crop_width: their width (multiple of 16; default ``crop``): wide crops keep a point's match in
        the other view inside the crop, so the joint decoder learns to find it along the row.
    seed: seed of the crop positions.
    edge_source: the replay spec recorded in the bundle (default: the held-out scenes under root).
``DataConfig.n_windows`` is the number of training crops; ``split_seed``/``fold`` pick
the scene split (80/10/10, or 5-fold).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ndsc.sources.images import PEAK, StereoPair, find_pairs, read_pair
from models.config import DataConfig
from training.data import JointDataset, group_split, register_dataset

DEFAULTS = {"root": None, "crop": 64, "crop_width": None, "seed": 0, "edge_source": None}


@dataclass(frozen=True)
class SceneSplit:
    """Scene names per split and the pairs on disk."""

    train: list[str]
    val: list[str]
    test: list[str]
    pairs: list[StereoPair]

    def pairs_of(self, split: str) -> list[StereoPair]:
        names = set(getattr(self, split))
        return [p for p in self.pairs if p.scene in names]


def stereo_params(cfg: DataConfig) -> dict:
    p = {**DEFAULTS, **cfg.params}
    if not p["root"]:
        raise ValueError("the stereo data set needs data.params.root: a folder of stereo pairs "
                         "(e.g. ndsc stereo-train --root DIR)")
    p["crop_width"] = p["crop_width"] or p["crop"]
    for key in ("crop", "crop_width"):
        if int(p[key]) % 16:
            raise ValueError(f"{key}={p[key]} must be a multiple of 16 (the encoder stride)")
    return p


def crop_size(p: dict) -> tuple[int, int]:
    """(height, width) of training crops and held-out tiles."""
    return int(p["crop"]), int(p["crop_width"])


def scene_split(cfg: DataConfig) -> SceneSplit:
    """Split the scenes under ``params.root`` (never crops) into train/val/test."""
    p = stereo_params(cfg)
    pairs = find_pairs(p["root"])
    scenes = sorted({q.scene for q in pairs})
    if len(scenes) < 3:
        raise ValueError(f"{p['root']}: {len(scenes)} scene(s); a scene-level split needs at least 3")
    train, val, test = group_split(scenes, seed=cfg.split_seed, fold=cfg.fold)
    return SceneSplit(sorted(train), sorted(val), sorted(test), pairs)


def aligned_crops(images: list[np.ndarray], count: int, size: int | tuple[int, int],
                  rng: np.random.Generator) -> np.ndarray:
    """``count`` random crops (count, N, C, h, w) of ``size`` (h, w) or h = w = ``size``; one window
    position for all N views.

    Images are chosen with probability proportional to their number of crop positions,
    so large and small scenes are sampled evenly per pixel.
    """
    ch, cw = (size, size) if isinstance(size, int) else size
    usable = [im for im in images if im.shape[-2] >= ch and im.shape[-1] >= cw]
    if not usable:
        raise ValueError(f"no training image is at least {ch}×{cw}")
    weights = np.array([(im.shape[-2] - ch + 1) * (im.shape[-1] - cw + 1) for im in usable], float)
    picks = rng.choice(len(usable), size=count, p=weights / weights.sum())
    out = np.empty((count, *usable[0].shape[:2], ch, cw), dtype=np.float32)
    for k, which in enumerate(picks):
        im = usable[which]
        top = rng.integers(0, im.shape[-2] - ch + 1)
        left = rng.integers(0, im.shape[-1] - cw + 1)
        out[k] = im[..., top:top + ch, left:left + cw]  # same window in every view
    return out


def grid_tiles(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Non-overlapping tiles of ``size`` (h, w) or h = w = ``size`` inside (N, C, H, W) (no padding):
    (k, N, C, h, w)."""
    n, c, h, w = image.shape
    th, tw = (size, size) if isinstance(size, int) else size
    tiles = [image[..., y:y + th, x:x + tw] for y in range(0, h - th + 1, th)
             for x in range(0, w - tw + 1, tw)]
    return np.stack(tiles).astype(np.float32) if tiles else np.empty((0, n, c, th, tw), np.float32)


def full_pairs(cfg: DataConfig, split: str = "test") -> list[tuple[str, np.ndarray]]:
    """Whole images of a split: [(scene, (2, 3, H, W) float32)], sizes differ per scene."""
    return [(q.scene, read_pair(q)) for q in scene_split(cfg).pairs_of(split)]


@register_dataset("stereo")
def stereo_dataset(cfg: DataConfig) -> JointDataset:
    p = stereo_params(cfg)
    split = scene_split(cfg)
    rng = np.random.default_rng(int(p["seed"]))
    train_images = [read_pair(q) for q in split.pairs_of("train")]
    train = aligned_crops(train_images, cfg.n_windows, crop_size(p), rng)
    held = {s: np.concatenate([grid_tiles(read_pair(q), crop_size(p)) for q in split.pairs_of(s)])
            for s in ("val", "test")}
    root = str(Path(p["root"]).resolve())
    return JointDataset(
        train=train, val=held["val"], test=held["test"], modality="stereo", source_names=["left", "right"],
        channel_names=[["left.R", "left.G", "left.B"], ["right.R", "right.G", "right.B"]], sample_rate=None,
        edge_source=p["edge_source"] or f"images:{root}#scenes={';'.join(split.test)}",
        info={"peak": PEAK, "stride": 16, "root": root, "train_scenes": split.train, "val_scenes": split.val,
              "test_scenes": split.test, "spatial_axes": "dynamic (pad to stride 16, crop back)"},
    )
