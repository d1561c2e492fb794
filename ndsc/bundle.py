"""The model bundle: the contract between training and serving.

A bundle is a directory::

    manifest.json        # everything below, plus the bundle id
    encoder_<i>.onnx     # one ONNX analysis transform per source (edge side)
    decoder.pt           # joint decoder state dict (fusion-decoder side)

``bundle_id`` is ``sha256`` over the canonical manifest (without the id itself), and
the manifest lists the ``sha256`` of every file, so one id pins every byte. The edge
loads only its own encoder and tables; the decoder loads the decoder weights and every
source's tables. :func:`load_bundle` refuses a bundle whose files or manifest were
changed after export.

Format ``ndsc-bundle/2`` records the payload format under ``"bitstream"``
(``{"version": 2, "coder": "constriction==0.5.0"}``: the version defines the bytes, see
``docs/bitstream.md``; ``coder`` names what wrote the bundle, for the record). Format
``ndsc-bundle/1`` has no such record and is read as bitstream version 1. Code that
predates format 2 refuses a format-2 bundle instead of writing bytes the decoder would
misread.

Format ``ndsc-bundle/3`` adds binning: a source may declare ``"coding": "syndrome"`` with a
``"binning"`` record (``ndsc.binning.SyndromeSpec``: side sources, bit planes, the frozen
parity-check matrix, the decoder's conditional model), and the manifest a
``"decode_order"`` (side-information sources first). It is written only for bundles with a
syndrome source, so every direct-only bundle keeps format 2 and its id; a source without
``coding`` is ``direct``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ndsc.binning import SYNDROME, SyndromeError, SyndromeSpec, decode_order
from ndsc.entropy import BITSTREAM_VERSION, LEGACY_BITSTREAM, ChannelTable, LatentCoder
from ndsc.sources.base import is_frame_shape

BUNDLE_FORMAT = "ndsc-bundle/2"
#: Bundles with a syndrome-coded source (binning); direct-only bundles stay format 2.
BINNING_BUNDLE_FORMAT = "ndsc-bundle/3"
#: coding modes of a source
DIRECT = "direct"
#: Bundles without a bitstream record (bitstream version 1); still read and rewritten as such.
LEGACY_BUNDLE_FORMAT = "ndsc-bundle/1"
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """A bundle that is missing, tampered with, or not the one expected."""


class BundleNotFound(BundleError):
    """No bundle there: the directory, its manifest or one of its files does not exist."""


class BundleModified(BundleError):
    """A bundle changed after export: a file's sha256 or the manifest's content id differs."""


@dataclass(frozen=True)
class QualityPoint:
    """One operating point of a variable-rate source: its quantiser gains and static tables.

    The edge codes ``round(float32(y) · gain)`` (one gain per latent channel, an exact float32
    product) with ``tables``; the decoder dequantises symbols as ``symbol / gain``. One decoder
    serves every point, so a node picks its point at run time (``ndsc edge --quality``).

    Attributes:
        name: the point's name on the wire and in metrics (``"1"`` … ``"6"``).
        gain: per latent channel, positive.
        tables: one static entropy table per latent channel.
    """

    name: str
    gain: tuple[float, ...]
    tables: tuple[ChannelTable, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "gain": list(self.gain), "tables": [t.to_json() for t in self.tables]}

    @classmethod
    def from_json(cls, obj: dict) -> "QualityPoint":
        gain = tuple(float(g) for g in obj["gain"])
        if not all(g > 0 and g == g and g != float("inf") for g in gain):
            raise BundleError(f"quality point {obj.get('name')!r}: gains must be positive and finite")
        return cls(name=str(obj["name"]), gain=gain, tables=tuple(ChannelTable.from_json(t) for t in obj["tables"]))


@dataclass(frozen=True)
class SourceInfo:
    """What one edge node needs to know about its source.

    Attributes:
        name: source name (``"lead II"``, ``"left"``, ``"s0"``).
        channel_names: names of the channels inside the source window.
        input_shape: window shape fed to the encoder, without batch: (C, T) or (C, H, W).
        latent_shape: latent shape out of the encoder, without batch: (M, L) or (M, h, w).
        encoder_file: the ONNX file of this source's analysis transform.
        tables: one static entropy table per latent channel (M of them).
        quantisation: how the edge turns encoder floats into symbols (``round``).
        quality_points: the operating points of a variable-rate source (empty: one fixed point,
            ``tables`` with unit gains). ``tables`` then holds the default point's tables.
        default_quality: the point used when a node names none.
        frame_stride: set (e.g. 16) when the encoder is a fully convolutional image encoder
            with that stride: a stream may then carry whole frames (C, H, W) of any size,
            padded to the stride, with latents (M, ceil(H/s), ceil(W/s)); the static
            per-channel tables do not depend on position. None (older bundles, 1-D
            encoders): windows are exactly ``input_shape`` (image frames travel as tiles).
        bitstream: payload format version of the tables, from the bundle's manifest (not
            part of the per-source JSON).
        coding: ``direct`` (symbols ANS-coded with ``tables``) or ``syndrome`` (bit planes as
            syndromes, ``binning``; ``tables`` then code the fallback direct payload).
        binning: the syndrome source's binning record (None for a direct source).
    """

    name: str
    channel_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    encoder_file: str
    tables: tuple[ChannelTable, ...]
    quantisation: str = "round"
    frame_stride: int | None = None
    quality_points: tuple[QualityPoint, ...] = ()
    default_quality: str | None = None
    bitstream: int = BITSTREAM_VERSION
    coding: str = DIRECT
    binning: SyndromeSpec | None = None

    @property
    def syndrome(self) -> bool:
        """Whether the source is syndrome-coded (binning)."""
        return self.coding == SYNDROME

    @property
    def quality_names(self) -> tuple[str, ...]:
        """Names of the operating points, lowest rate first (empty for a fixed-rate source)."""
        return tuple(q.name for q in self.quality_points)

    def quality(self, name: str | None) -> QualityPoint | None:
        """The operating point ``name`` (None: the default); None for a fixed-rate source.

        Raises:
            BundleError: a point this source does not have, or a point named for a fixed-rate source.
        """
        if not self.quality_points:
            if name not in (None, ""):
                raise BundleError(
                    f"source {self.name} has one fixed operating point: no quality {name!r} (leave --quality unset)"
                )
            return None
        name = self.default_quality if name in (None, "") else str(name)
        for point in self.quality_points:
            if point.name == name:
                return point
        raise BundleError(
            f"unknown quality point {name!r} for source {self.name}: choose one of {', '.join(self.quality_names)}"
        )

    @property
    def whole_frames(self) -> bool:
        """Whether streams of this source may carry whole frames of any size."""
        return bool(self.frame_stride) and len(self.input_shape) == 3

    def accepts_frame(self, frame_shape: Sequence[int]) -> bool:
        """Whether streams of this source may carry a whole frame of ``frame_shape`` (C, H, W)."""
        return self.whole_frames and is_frame_shape(frame_shape, self.input_shape[0])

    def frame_latent_shape(self, frame_shape: Sequence[int]) -> tuple[int, ...]:
        """Latent shape of a frame: ``latent_shape`` for the window shape, else (M, ⌈H/s⌉, ⌈W/s⌉).

        Raises:
            BundleError: a shape this source cannot encode.
        """
        frame_shape = tuple(int(v) for v in frame_shape)
        if frame_shape == self.input_shape:
            return self.latent_shape
        if not self.accepts_frame(frame_shape):
            raise BundleError(
                f"source {self.name}: cannot encode a frame of shape {frame_shape} "
                f"(window shape {self.input_shape}, whole frames {self.whole_frames})"
            )
        s = self.frame_stride
        assert s is not None  # whole frames come with a stride
        return (self.latent_shape[0], -(-frame_shape[1] // s), -(-frame_shape[2] // s))

    @property
    def latent_length(self) -> int:
        """Positions per latent channel (the L of the coder's (M, L))."""
        n = 1
        for d in self.latent_shape[1:]:
            n *= d
        return n

    @property
    def samples_per_window(self) -> int:
        """Input values per window (for bits per sample)."""
        n = 1
        for d in self.input_shape:
            n *= d
        return n

    def coder(self, quality: str | None = None) -> LatentCoder:
        """The entropy coder of operating point ``quality`` (None: the default), in the bundle's bitstream."""
        point = self.quality(quality)
        return LatentCoder(point.tables if point else self.tables, self.bitstream)

    def gain(self, quality: str | None = None) -> np.ndarray | None:
        """float32 per-channel quantiser gains of ``quality`` (None for a fixed-rate source)."""
        point = self.quality(quality)
        return None if point is None else np.asarray(point.gain, dtype=np.float32)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "channel_names": list(self.channel_names),
            "input_shape": list(self.input_shape),
            "latent_shape": list(self.latent_shape),
            "encoder_file": self.encoder_file,
            "quantisation": self.quantisation,
            "tables": [t.to_json() for t in self.tables],
            # written only when set, so bundles without it keep their manifests (and ids)
            **({"frame_stride": self.frame_stride} if self.frame_stride else {}),
            **(
                {"quality_points": [q.to_json() for q in self.quality_points], "default_quality": self.default_quality}
                if self.quality_points
                else {}
            ),
            **({"coding": self.coding, "binning": self.binning.to_json()} if self.binning is not None else {}),
        }

    @classmethod
    def from_json(cls, obj: dict, bitstream: int = BITSTREAM_VERSION) -> "SourceInfo":
        tables = tuple(ChannelTable.from_json(t) for t in obj["tables"])
        info = cls(
            name=str(obj["name"]),
            channel_names=tuple(obj["channel_names"]),
            input_shape=tuple(int(v) for v in obj["input_shape"]),
            latent_shape=tuple(int(v) for v in obj["latent_shape"]),
            encoder_file=str(obj["encoder_file"]),
            tables=tables,
            quantisation=str(obj.get("quantisation", "round")),
            frame_stride=int(obj["frame_stride"]) if obj.get("frame_stride") else None,
            quality_points=tuple(QualityPoint.from_json(q) for q in obj.get("quality_points", ())),
            default_quality=str(obj["default_quality"]) if obj.get("default_quality") is not None else None,
            bitstream=bitstream,
            coding=str(obj.get("coding", DIRECT)),
        )
        if info.coding not in (DIRECT, SYNDROME):
            raise BundleError(f"source {info.name}: unknown coding {info.coding!r} (direct or syndrome)")
        if info.syndrome:
            try:
                spec = SyndromeSpec.from_json(obj["binning"])
            except (KeyError, TypeError, SyndromeError) as exc:
                raise BundleError(f"source {info.name}: bad binning record ({exc})") from exc
            if spec.conditional.get("kind") == "stereo-tiles":  # whole frames in tiles (docs/bitstream.md §8)
                if (
                    not info.frame_stride
                    or spec.n % info.latent_shape[0]
                    or not all(str(q) in spec.conditional["scales"] for q in (info.quality_names or ("",)))
                ):
                    raise BundleError(
                        f"source {info.name}: a stereo-tiled source codes whole frames, its tiles hold "
                        f"its {info.latent_shape[0]} channels, and it has scales for every point"
                    )
            elif spec.n != info.latent_shape[0] * info.latent_length or info.quality_points or info.frame_stride:
                raise BundleError(
                    f"source {info.name}: a syndrome source has one fixed point, no whole frames, "
                    f"and a code of M·L = {info.latent_shape[0] * info.latent_length} bits"
                )
            info = replace(info, binning=spec)
        if len(tables) != info.latent_shape[0]:
            raise BundleError(f"source {info.name}: {len(tables)} tables for {info.latent_shape[0]} channels")
        for q in info.quality_points:
            if len(q.tables) != info.latent_shape[0] or len(q.gain) != info.latent_shape[0]:
                raise BundleError(
                    f"source {info.name}, quality {q.name}: {len(q.tables)} tables and "
                    f"{len(q.gain)} gains for {info.latent_shape[0]} channels"
                )
        if info.quality_points:
            default = info.quality(info.default_quality)  # the default must be one of the points
            # Edges that predate quality points code with ``tables``: they must be the default point's.
            if default is not None and tuple(default.tables) != tuple(info.tables):
                raise BundleError(f"source {info.name}: its tables are not those of its default point {default.name}")
        return info


@dataclass
class Bundle:
    """A loaded, verified model bundle."""

    path: Path
    bundle_id: str
    modality: str
    sample_rate: float | None
    sources: list[SourceInfo]
    decoder: dict[str, Any]
    training_config: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    bitstream: int = BITSTREAM_VERSION

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    @property
    def decode_order(self) -> list[int]:
        """Source indices in decode order: direct sources first, then syndrome sources after their sides."""
        return decode_order(
            [s.coding for s in self.sources], [s.binning.side_sources if s.binning else () for s in self.sources]
        )

    @property
    def binning(self) -> bool:
        """Whether any source is syndrome-coded."""
        return any(s.syndrome for s in self.sources)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def quality_names(self) -> tuple[str, ...]:
        """Operating points every source offers (empty: a fixed-rate bundle)."""
        return self.sources[0].quality_names if self.sources else ()

    @property
    def default_quality(self) -> str | None:
        return self.sources[0].default_quality if self.sources else None

    def source(self, index: int) -> SourceInfo:
        if not 0 <= index < len(self.sources):
            raise BundleError(f"source index {index} out of range 0..{len(self.sources) - 1}")
        return self.sources[index]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _coder_name() -> str:
    try:
        return f"constriction=={version('constriction')}"
    except PackageNotFoundError:  # a source checkout without metadata: still record the library
        return "constriction"


def _bitstream_of(manifest: dict, mpath: Path) -> int:
    """The bitstream version a manifest declares (1 for format-1 bundles)."""
    if manifest.get("format") == LEGACY_BUNDLE_FORMAT:
        if "bitstream" in manifest:
            raise BundleError(f"{mpath}: format {LEGACY_BUNDLE_FORMAT} has no bitstream record, but one is present")
        return LEGACY_BITSTREAM
    record = manifest.get("bitstream")
    found = record.get("version") if isinstance(record, dict) else None
    if found != BITSTREAM_VERSION or isinstance(found, bool):
        raise BundleError(
            f"{mpath}: bitstream version {found!r} is not one this ndsc can code "
            f"(it reads {BITSTREAM_VERSION}, and {LEGACY_BITSTREAM} for {LEGACY_BUNDLE_FORMAT} bundles)"
        )
    return found


def _content_id(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "bundle_id"}
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()


def write_manifest(
    path: str | Path,
    *,
    modality: str,
    sources: Sequence[SourceInfo],
    decoder: dict[str, Any],
    sample_rate: float | None = None,
    training_config: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write ``manifest.json`` for files already in ``path``; return the bundle id.

    ``decoder`` must name its weights file under the key ``"weights"``; every encoder
    file and the weights are hashed into the manifest. The bitstream version is the
    sources' (all the same): rewriting a loaded format-1 bundle keeps it format 1, since
    its edges and figures were made with that coder.
    """
    root = Path(path)
    versions = {s.bitstream for s in sources}
    if len(versions) != 1 or not versions <= {LEGACY_BITSTREAM, BITSTREAM_VERSION}:
        raise BundleError(f"sources must share one known bitstream version, got {sorted(versions)}")
    legacy = versions == {LEGACY_BITSTREAM}
    files = [s.encoder_file for s in sources] + [decoder["weights"]]
    hashes = {}
    for name in files:
        if not (root / name).is_file():
            raise BundleError(f"bundle file {name} missing in {root}")
        hashes[name] = _sha256_file(root / name)
    binning = any(s.syndrome for s in sources)
    if binning and legacy:
        raise BundleError("syndrome sources need bitstream version 2")
    order = decode_order([s.coding for s in sources], [s.binning.side_sources if s.binning else () for s in sources])
    manifest = {
        "format": BINNING_BUNDLE_FORMAT if binning else LEGACY_BUNDLE_FORMAT if legacy else BUNDLE_FORMAT,
        **({"decode_order": order} if binning else {}),
        **({} if legacy else {"bitstream": {"version": BITSTREAM_VERSION, "coder": _coder_name()}}),
        "modality": modality,
        "sample_rate": sample_rate,
        "sources": [s.to_json() for s in sources],
        "decoder": dict(decoder),
        "files": hashes,
        "training_config": training_config or {},
        "evaluation": evaluation or {},
        "extra": extra or {},
    }
    bundle_id = manifest["bundle_id"] = _content_id(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return bundle_id


def load_bundle(path: str | Path, expected_id: str | None = None, verify_files: bool = True) -> Bundle:
    """Load and verify a bundle directory.

    Raises:
        BundleError: missing manifest or file, unknown bundle format or bitstream version,
            a file whose hash differs from the manifest, a manifest edited after export, or an
            id different from ``expected_id``.
    """
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise BundleNotFound(f"no bundle at {root}: the directory does not exist")
    if not mpath.is_file():
        raise BundleNotFound(f"{root} is not a model bundle: no {MANIFEST}")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise BundleModified(f"{mpath}: not valid JSON ({exc})") from exc
    if manifest.get("format") not in (BUNDLE_FORMAT, LEGACY_BUNDLE_FORMAT, BINNING_BUNDLE_FORMAT):
        raise BundleError(f"{mpath}: unknown bundle format {manifest.get('format')!r}")
    bitstream = _bitstream_of(manifest, mpath)
    recomputed = _content_id(manifest)
    if manifest.get("bundle_id") != recomputed:
        raise BundleModified(
            f"{mpath}: manifest was modified after export (id {manifest.get('bundle_id')} != content {recomputed})"
        )
    if verify_files:
        for name, digest in manifest["files"].items():
            fpath = root / name
            if not fpath.is_file():
                raise BundleNotFound(f"bundle file {name} missing in {root}")
            if _sha256_file(fpath) != digest:
                raise BundleModified(
                    f"bundle file {name} was modified: its sha256 does not match the manifest ({root})"
                )
    if expected_id is not None and manifest["bundle_id"] != expected_id:
        raise BundleError(f"bundle id {manifest['bundle_id']} does not match expected {expected_id}")
    bundle = Bundle(
        path=root,
        bundle_id=manifest["bundle_id"],
        modality=manifest["modality"],
        sample_rate=manifest.get("sample_rate"),
        sources=[SourceInfo.from_json(s, bitstream) for s in manifest["sources"]],
        decoder=manifest["decoder"],
        training_config=manifest.get("training_config", {}),
        evaluation=manifest.get("evaluation", {}),
        extra=manifest.get("extra", {}),
        bitstream=bitstream,
    )
    _check_binning(bundle, manifest, mpath)
    return bundle


def _check_binning(bundle: Bundle, manifest: dict, mpath: Path) -> None:
    """Syndrome sources only in format 3, side sources that exist, the declared decode order the real one."""
    fmt = manifest.get("format")
    if bundle.binning != (fmt == BINNING_BUNDLE_FORMAT):
        raise BundleError(f"{mpath}: format {fmt} {'with' if bundle.binning else 'without'} syndrome sources")
    if not bundle.binning:
        return
    for s in bundle.sources:
        if s.binning and not all(
            0 <= j < bundle.n_sources and not bundle.sources[j].syndrome for j in s.binning.side_sources
        ):
            raise BundleError(f"{mpath}: source {s.name}: side sources must be direct sources of the bundle")
    try:
        order = bundle.decode_order
    except SyndromeError as exc:
        raise BundleError(f"{mpath}: {exc}") from exc
    if manifest.get("decode_order") != order:
        raise BundleError(f"{mpath}: decode_order {manifest.get('decode_order')} is not {order}")
