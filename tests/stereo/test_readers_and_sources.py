import subprocess
import sys

import numpy as np
import pytest

from ndsc.sources import SourceError, open_source
from ndsc.sources.images import find_pairs, read_image, read_pair, split_tiles, stitch_tiles
from tests.stereo.conftest import LAYOUTS, SCENE_HW, scene_crop, write_rgb


def test_every_layout_is_found_with_its_scene_and_pixels(layouts_root, motorcycle):
    pairs = find_pairs(layouts_root)
    by_layout = {}
    for p in pairs:
        by_layout.setdefault(p.layout, []).append(p)
    assert set(by_layout) == {"middlebury2014", "middlebury2005", "middlebury2001", "flat", "kitti"}
    for k, scene in enumerate(LAYOUTS):
        (pair,) = [p for p in pairs if p.scene == scene]
        arr = read_pair(pair)
        assert arr.shape == (2, 3, *SCENE_HW) and arr.dtype == np.float32
        # PNG and PPM are lossless: the exact pixels written come back, left and right apart.
        assert np.array_equal(arr, scene_crop(motorcycle, k))
        assert not np.array_equal(arr[0], arr[1])


def test_kitti_frames_of_one_sequence_form_one_scene(layouts_root):
    kitti = [p for p in find_pairs(layouts_root) if p.layout == "kitti"]
    assert [(p.scene, p.left.name) for p in kitti] == [("000000", "000000_10.png"), ("000000", "000000_11.png"),
                                                       ("000001", "000001_10.png")]
    assert all(p.left.parent.name == "image_2" and p.right.parent.name == "image_3" for p in kitti)


def test_grey_images_become_rgb_and_bad_input_is_refused(tmp_path):
    from PIL import Image

    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(tmp_path / "grey.png")
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (3, 6, 8) and np.array_equal(grey[0], grey[2])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(SourceError, match="cannot read"):
        read_image(tmp_path / "broken.png")
    write_rgb(tmp_path / "s" / "left.png", np.zeros((3, 8, 8)))
    write_rgb(tmp_path / "s" / "right.png", np.zeros((3, 8, 9)))
    with pytest.raises(SourceError, match="differ in size"):
        read_pair(find_pairs(tmp_path / "s")[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no stereo pair"):
        find_pairs(empty)


def test_tiles_stitch_back_to_the_frame():
    frame = np.random.default_rng(0).uniform(0, 255, (3, 50, 70)).astype(np.float32)
    tiles = split_tiles(frame, (32, 32))
    assert tiles.shape == (2 * 3, 3, 32, 32)
    assert np.array_equal(stitch_tiles(tiles, (50, 70)), frame)
    assert np.array_equal(tiles[0], frame[:, :32, :32]) and np.array_equal(tiles[1], frame[:, :32, 32:64])


def test_images_source_gives_each_node_its_view_with_matching_indices(layouts_root):
    spec = f"images:{layouts_root}#scenes=flat;mb2014"
    left = list(open_source(spec, 0, (3, 64, 64)).windows())
    right = list(open_source(spec, 1, (3, 64, 64)).windows())
    assert [w.index for w in left] == [w.index for w in right] == list(range(8))  # 2 frames × 2×2 tiles
    pairs = {p.scene: read_pair(p) for p in find_pairs(layouts_root)}
    assert np.array_equal(stitch_tiles(np.stack([w.data for w in left[4:]]), SCENE_HW), pairs["mb2014"][0])
    assert np.array_equal(stitch_tiles(np.stack([w.data for w in right[:4]]), SCENE_HW), pairs["flat"][1])
    explicit = list(open_source(f"images:{layouts_root}#view=1,scenes=flat", 0, (3, 64, 64)).windows())
    assert np.array_equal(explicit[0].data, right[0].data)


def test_a_folder_of_frames_plays_in_name_order(tmp_path, motorcycle):
    for k in range(3):
        write_rgb(tmp_path / f"frame_{k:03d}.png", scene_crop(motorcycle, k)[0])
    windows = list(open_source(f"images:{tmp_path}#repeat=2", 0, (3, *SCENE_HW)).windows())
    assert len(windows) == 6  # the bundle's input is the whole frame: one window per frame
    assert np.array_equal(windows[1].data, scene_crop(motorcycle, 1)[0])
    assert np.array_equal(windows[4].data, windows[1].data)


def test_skimage_source_plays_the_shipped_pair(motorcycle):
    windows = list(open_source("stereo-skimage:#view=1", 0, (3, 256, 256)).windows())
    assert len(windows) == 2 * 3  # 500×741 in 256×256 tiles
    assert np.array_equal(windows[0].data, motorcycle[1, :, :256, :256])


@pytest.mark.parametrize("spec, message", [
    ("images:", "needs a directory"),
    ("images:/no/such/dir", "not a directory"),
    ("images:{root}#view=2", "view must be 0"),
    ("images:{root}#colour=1", "unknown images arguments"),
    ("images:{root}#scenes=nope", "no scene"),
    ("stereo-skimage:#speed=3", "unknown stereo-skimage arguments"),
])
def test_bad_specs_get_clear_errors(layouts_root, spec, message):
    with pytest.raises(SourceError, match=message):
        open_source(spec.format(root=layouts_root), 0, (3, 64, 64))


def test_image_shape_must_be_rgb(layouts_root):
    with pytest.raises(SourceError, match="RGB"):
        open_source(f"images:{layouts_root}", 0, (1, 64))


def test_image_sources_never_import_torch(layouts_root):
    code = ("import sys; from ndsc.sources import open_source; "
            f"w = next(open_source('images:{layouts_root}', 0, (3, 64, 64)).windows()); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_frames_of_different_sizes_give_their_own_tile_counts(tmp_path, motorcycle):
    write_rgb(tmp_path / "a.png", motorcycle[0, :, :64, :64])
    write_rgb(tmp_path / "b.png", motorcycle[0, :, :100, :130])
    windows = list(open_source(f"images:{tmp_path}", 0, (3, 64, 64)).windows())
    assert [w.index for w in windows] == list(range(1 + 2 * 3))
    assert np.array_equal(stitch_tiles(np.stack([w.data for w in windows[1:]]), (100, 130)),
                          motorcycle[0, :, :100, :130])
