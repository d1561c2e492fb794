import numpy as np
import pytest

from ndsc.sources.images import find_pairs, read_pair
from models.config import DataConfig
from training.data import group_split
from training.datasets_stereo import aligned_crops, full_pairs, scene_split, stereo_dataset


def _coordinate_pair(h: int, w: int, offset: float) -> np.ndarray:
    """Two views whose pixels encode (row, column); the right view is the left plus ``offset``."""
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    left = np.stack([rows, cols, rows + cols])
    return np.stack([left, left + offset])


def test_crops_use_the_same_window_in_both_views():
    images = [_coordinate_pair(40, 70, 1000.0), _coordinate_pair(90, 50, 2000.0)]
    crops = aligned_crops(images, 200, 32, np.random.default_rng(0))
    assert crops.shape == (200, 2, 3, 32, 32)
    offsets = crops[:, 1] - crops[:, 0]
    assert set(np.unique(offsets)) <= {1000.0, 2000.0}
    assert (offsets == offsets[:, :1, :1, :1]).all()  # one image per crop, never mixed
    top, left = crops[:, 0, 0, 0, 0], crops[:, 0, 1, 0, 0]
    expected = _coordinate_pair(32, 32, 0)[0][None] + np.stack([top, left, top + left], 1)[:, :, None, None]
    assert np.array_equal(crops[:, 0], expected)  # a contiguous window at (top, left)
    assert len(set(zip(top.tolist(), left.tolist()))) > 100  # positions are random


def test_crops_need_images_at_least_the_crop_size():
    with pytest.raises(ValueError, match="at least 64"):
        aligned_crops([_coordinate_pair(40, 70, 0)], 4, 64, np.random.default_rng(0))


def test_scene_split_never_shares_a_scene_and_folds_cover_every_scene(layouts_root):
    scenes = sorted({p.scene for p in find_pairs(layouts_root)})
    split = scene_split(DataConfig(kind="stereo", params={"root": str(layouts_root)}))
    assert sorted(split.train + split.val + split.test) == scenes
    tests = [t for k in range(5) for t in group_split(scenes, fold=k)[2]]
    assert sorted(tests) == scenes


def test_train_crops_come_only_from_training_scenes(layouts_root):
    cfg = DataConfig(kind="stereo", n_windows=40, params={"root": str(layouts_root), "crop": 32})
    data = stereo_dataset(cfg)
    assert data.train.shape == (40, 2, 3, 32, 32) and data.window_shape == (3, 32, 32)
    assert data.test.shape[1:] == (2, 3, 32, 32) and len(data.test) > 0
    split = scene_split(cfg)
    train_images = [read_pair(p) for p in split.pairs_of("train")]
    for crop in data.train[:4]:
        found = any(np.array_equal(im[..., y:y + 32, x:x + 32], crop) for im in train_images
                    for y in range(im.shape[-2] - 31) for x in range(im.shape[-1] - 31))
        assert found
    whole = full_pairs(cfg, "test")
    assert [s for s, _ in whole] == split.test and whole[0][1].shape[:2] == (2, 3)
    assert data.edge_source.startswith("images:") and f"scenes={';'.join(split.test)}" in data.edge_source


@pytest.mark.parametrize("params, message", [({}, "needs data.params.root"), ({"root": "x", "crop": 40}, "multiple of 16")])
def test_stereo_params_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        stereo_dataset(DataConfig(kind="stereo", params=params))
