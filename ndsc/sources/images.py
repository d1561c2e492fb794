"""Stereo image readers and edge image sources (numpy + Pillow; never torch).

Readers find rectified stereo pairs in the directory layouts the public data sets use:

=====================  ===========================================  ============
layout                 files in one scene folder                    scene name
=====================  ===========================================  ============
Middlebury 2014        ``im0.png`` (left), ``im1.png`` (right)      folder name
Middlebury 2005/2006   ``view1.png`` (left), ``view5.png`` (right)  folder name
Middlebury 2001/2003   ``im2.ppm`` (left), ``im6.ppm`` (right)      folder name
flat                   ``left.png``, ``right.png``                  folder name
KITTI stereo           ``image_2/NAME.png`` (left), ``image_3/NAME.png``  ``NAME`` up to ``_``
=====================  ===========================================  ============

Pixel arrays are float32 (3, H, W) in 0..255 (8-bit values unchanged; grey images are
repeated to RGB). Edge sources (``images:`` and ``stereo-skimage:``) yield one window per
whole frame (any size; the edge pads it to the encoder stride) when the bundle's encoder is
fully convolutional (``frame_stride``), else they cut each frame into tiles of the bundle's
``input_shape`` (C, h, w) in raster order — one tile when the frame has exactly that size —
padding the right and bottom edges by replication. Every node of a pair uses the same frame
sizes, so window indices agree across nodes without talking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ndsc.sources.base import SourceError, Window, parse_kv, register_source

#: (left file, right file, layout name), tried in this order inside one folder.
PAIR_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("im0.png", "im1.png", "middlebury2014"),
    ("view1.png", "view5.png", "middlebury2005"),
    ("im2.ppm", "im6.ppm", "middlebury2001"),
    ("im2.png", "im6.png", "middlebury2001"),
    ("left.png", "right.png", "flat"),
)
IMAGE_SUFFIXES = (".png", ".ppm", ".pgm", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: pixel peak of 8-bit images (PSNR reference)
PEAK = 255.0


@dataclass(frozen=True)
class StereoPair:
    """One rectified pair on disk.

    Attributes:
        scene: the scene (group) this pair belongs to; splits never separate a scene.
        left, right: image paths (left is the reference view, view 0).
        layout: which directory layout it was found in.
    """

    scene: str
    left: Path
    right: Path
    layout: str

    def paths(self) -> tuple[Path, Path]:
        return (self.left, self.right)


def read_image(path: str | Path) -> np.ndarray:
    """One image file as float32 (3, H, W) in 0..255.

    Raises:
        SourceError: unreadable file or a bit depth other than 8.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("I", "I;16", "I;16B", "F"):
                raise SourceError(f"{path}: {im.mode} images are not 8-bit; convert them first")
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise SourceError(f"cannot read image {path}: {exc}") from exc
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)


def read_pair(pair: StereoPair) -> np.ndarray:
    """Both views as float32 (2, 3, H, W); raises :class:`SourceError` if sizes differ."""
    left, right = read_image(pair.left), read_image(pair.right)
    if left.shape != right.shape:
        raise SourceError(f"{pair.scene}: left {left.shape[1:]} and right {right.shape[1:]} differ in size")
    return np.stack([left, right])


def _kitti_pairs(root: Path) -> list[StereoPair]:
    left_dir, right_dir = root / "image_2", root / "image_3"
    pairs = []
    for left in sorted(p for p in left_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        right = right_dir / left.name
        if right.is_file():
            # KITTI names frames SEQ_FRAME.png; frames of one sequence are one scene.
            pairs.append(StereoPair(left.stem.split("_")[0], left, right, "kitti"))
    return pairs


def find_pairs(root: str | Path) -> list[StereoPair]:
    """All stereo pairs under ``root`` (recursively), sorted by scene then file.

    Raises:
        SourceError: ``root`` is not a directory or holds no pair in a known layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a directory")
    pairs: list[StereoPair] = []
    for folder in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        if (folder / "image_2").is_dir() and (folder / "image_3").is_dir():
            pairs.extend(_kitti_pairs(folder))
            continue
        for left, right, layout in PAIR_LAYOUTS:
            if (folder / left).is_file() and (folder / right).is_file():
                pairs.append(StereoPair(folder.name, folder / left, folder / right, layout))
                break
    if not pairs:
        raise SourceError(
            f"no stereo pair under {root} (looked for im0/im1.png, view1/view5.png, "
            "im2/im6.ppm, left/right.png, image_2/ + image_3/)"
        )
    return sorted(pairs, key=lambda p: (p.scene, str(p.left)))


def skimage_pair() -> np.ndarray:
    """The Middlebury 2014 Motorcycle pair shipped with scikit-image: float32 (2, 3, 500, 741)."""
    try:
        from skimage import data
    except ModuleNotFoundError as exc:
        raise SourceError("stereo-skimage needs scikit-image (pip install scikit-image)") from exc
    left, right, _ = data.stereo_motorcycle()
    return np.stack([left, right]).transpose(0, 3, 1, 2).astype(np.float32)


# --- tiling: frames of any size ↔ fixed-size encoder windows --------------------------
def tile_grid(frame_hw: tuple[int, int], tile_hw: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of tiles that cover a frame (the last ones padded)."""
    return math.ceil(frame_hw[0] / tile_hw[0]), math.ceil(frame_hw[1] / tile_hw[1])


def pad_to_multiple(image: np.ndarray, multiple_hw: tuple[int, int]) -> np.ndarray:
    """Pad (..., H, W) on the bottom/right by edge replication to multiples of ``multiple_hw``."""
    h, w = image.shape[-2:]
    ph, pw = -h % multiple_hw[0], -w % multiple_hw[1]
    if not ph and not pw:
        return image
    pad = [(0, 0)] * (image.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(image, pad, mode="edge")


def split_tiles(image: np.ndarray, tile_hw: tuple[int, int]) -> np.ndarray:
    """(C, H, W) → (rows·cols, C, th, tw) in raster order, edge-padded."""
    padded = pad_to_multiple(image, tile_hw)
    c, hp, wp = padded.shape
    th, tw = tile_hw
    tiles = padded.reshape(c, hp // th, th, wp // tw, tw).transpose(1, 3, 0, 2, 4)
    return np.ascontiguousarray(tiles.reshape(-1, c, th, tw))


def stitch_tiles(tiles: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`split_tiles`: (rows·cols, C, th, tw) → (C, H, W) cropped back."""
    n, c, th, tw = tiles.shape
    rows, cols = tile_grid(frame_hw, (th, tw))
    if n != rows * cols:
        raise SourceError(f"{n} tiles do not cover a {frame_hw} frame with {th}x{tw} tiles")
    full = tiles.reshape(rows, cols, c, th, tw).transpose(2, 0, 3, 1, 4).reshape(c, rows * th, cols * tw)
    return full[:, : frame_hw[0], : frame_hw[1]]


# --- edge sources ----------------------------------------------------------------------
class ImageFrameSource:
    """A sequence of frames of one camera: whole frames, or cut into the encoder's fixed-size tiles.

    Args:
        frames: callables returning float32 (3, H, W) frames, in order (loaded lazily).
        input_shape: the bundle's window shape (C, th, tw).
        name: source name used in the channel names.
        fps: frames per second at real-time pace.
        repeat: how many times to play the sequence (``0``: forever).
        whole_frames: one window per frame, unpadded (the bundle's encoder is fully
            convolutional); False: tiles of ``input_shape``.
    """

    def __init__(
        self,
        frames: Sequence,
        input_shape: tuple[int, ...],
        *,
        name: str,
        fps: float = 1.0,
        repeat: int = 1,
        whole_frames: bool = False,
    ):
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise SourceError(f"image sources need an RGB bundle input shape (3, h, w), got {input_shape}")
        if not frames:
            raise SourceError("no frames")
        self.frames = list(frames)
        self.tile_hw = (int(input_shape[1]), int(input_shape[2]))
        self.channel_names = tuple(f"{name}.{c}" for c in "RGB")
        self.whole_frames = whole_frames
        if whole_frames:
            self.window_period = 1.0 / fps
        else:
            first = self.frames[0]()
            # Pace: the first frame's tiles spread evenly over one frame period.
            self.window_period = 1.0 / fps / int(np.prod(tile_grid(first.shape[1:], self.tile_hw)))
        self.repeat = repeat

    def windows(self) -> Iterator[Window]:
        k = 0
        played = 0
        while self.repeat == 0 or played < self.repeat:
            for load in self.frames:
                if self.whole_frames:
                    yield Window(k, load(), 0.0)
                    k += 1
                    continue
                # Frames may differ in size (scenes of a data set): the tile count follows
                # each frame, and both views of a pair share a size, so indices still agree.
                for tile in split_tiles(load(), self.tile_hw):
                    yield Window(k, tile, 0.0)
                    k += 1
            played += 1


def _split_spec(args: str) -> tuple[str, dict[str, str]]:
    path, _, opts = args.partition("#")
    return path, parse_kv(opts)


def _frames_in(directory: Path, view: int, scenes: set[str]) -> tuple[list, str]:
    """Frame loaders for ``view`` of the pairs under ``directory``, else its plain image files."""
    try:
        pairs = find_pairs(directory)
    except SourceError:
        pairs = []
    if pairs and scenes:
        missing = scenes - {p.scene for p in pairs}
        if missing:
            raise SourceError(f"{directory}: no scene(s) {sorted(missing)}")
        pairs = [p for p in pairs if p.scene in scenes]
    if pairs:
        return [(lambda p=p: read_image(p.paths()[view])) for p in pairs], ("left", "right")[view]
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"{directory}: neither stereo pairs nor image files")
    return [(lambda f=f: read_image(f)) for f in files], directory.name


@register_source("images")
def _open_images(
    args: str, source_index: int, input_shape: tuple[int, ...], frame_stride: int | None = None
) -> ImageFrameSource:
    """``images:DIR#view=0,scenes=a;b,start=0,count=10,fps=1,repeat=1``.

    DIR holds stereo pairs in any known layout (``view`` 0 = left, 1 = right; default: the
    node's source index; ``scenes`` keeps only those scenes) or plain image files (one
    camera's frames, sorted by name).
    """
    path, kv = _split_spec(args)
    if not path:
        raise SourceError("images: needs a directory, e.g. images:/data/frames#view=0")
    view = int(kv.pop("view", source_index))
    start, count = int(kv.pop("start", 0)), (int(kv.pop("count")) if "count" in kv else None)
    fps, repeat = float(kv.pop("fps", 1.0)), int(kv.pop("repeat", 1))
    scenes = set(filter(None, kv.pop("scenes", "").split(";")))
    if kv:
        raise SourceError(f"unknown images arguments {sorted(kv)}")
    if view not in (0, 1):
        raise SourceError(f"view must be 0 (left) or 1 (right), got {view}")
    directory = Path(path)
    if not directory.is_dir():
        raise SourceError(f"images: {directory} is not a directory")
    frames, name = _frames_in(directory, view, scenes)
    frames = frames[start : None if count is None else start + count]
    return ImageFrameSource(frames, input_shape, name=name, fps=fps, repeat=repeat, whole_frames=bool(frame_stride))


@register_source("stereo-skimage")
def _open_skimage(
    args: str, source_index: int, input_shape: tuple[int, ...], frame_stride: int | None = None
) -> ImageFrameSource:
    """``stereo-skimage:#view=0,repeat=1,fps=1``: scikit-image's Motorcycle pair (no download)."""
    _, kv = _split_spec(args)
    view = int(kv.pop("view", source_index))
    fps, repeat = float(kv.pop("fps", 1.0)), int(kv.pop("repeat", 1))
    if kv:
        raise SourceError(f"unknown stereo-skimage arguments {sorted(kv)}")
    if view not in (0, 1):
        raise SourceError(f"view must be 0 (left) or 1 (right), got {view}")
    return ImageFrameSource(
        [lambda: skimage_pair()[view]],
        input_shape,
        name=("left", "right")[view],
        fps=fps,
        repeat=repeat,
        whole_frames=bool(frame_stride),
    )
