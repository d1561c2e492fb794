from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UplinkMessage(_message.Message):
    __slots__ = ("header", "batch", "syndrome")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    SYNDROME_FIELD_NUMBER: _ClassVar[int]
    header: StreamHeader
    batch: FrameBatch
    syndrome: SyndromeReply
    def __init__(self, header: _Optional[_Union[StreamHeader, _Mapping]] = ..., batch: _Optional[_Union[FrameBatch, _Mapping]] = ..., syndrome: _Optional[_Union[SyndromeReply, _Mapping]] = ...) -> None: ...

class StreamHeader(_message.Message):
    __slots__ = ("group", "node_id", "source_index", "bundle_id", "input_shape", "latent_shape", "flush_interval_s", "incarnation", "quality")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    LATENT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    FLUSH_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    group: str
    node_id: str
    source_index: int
    bundle_id: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    latent_shape: _containers.RepeatedScalarFieldContainer[int]
    flush_interval_s: float
    incarnation: int
    quality: str
    def __init__(self, group: _Optional[str] = ..., node_id: _Optional[str] = ..., source_index: _Optional[int] = ..., bundle_id: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., latent_shape: _Optional[_Iterable[int]] = ..., flush_interval_s: _Optional[float] = ..., incarnation: _Optional[int] = ..., quality: _Optional[str] = ...) -> None: ...

class FrameBatch(_message.Message):
    __slots__ = ("first_seq", "first_window", "first_capture_us", "frames")
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    FIRST_WINDOW_FIELD_NUMBER: _ClassVar[int]
    FIRST_CAPTURE_US_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    first_window: int
    first_capture_us: int
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    def __init__(self, first_seq: _Optional[int] = ..., first_window: _Optional[int] = ..., first_capture_us: _Optional[int] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("window_skip", "capture_delta_us", "crc32", "payload", "chunk", "chunks")
    WINDOW_SKIP_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_DELTA_US_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    window_skip: int
    capture_delta_us: int
    crc32: int
    payload: bytes
    chunk: int
    chunks: int
    def __init__(self, window_skip: _Optional[int] = ..., capture_delta_us: _Optional[int] = ..., crc32: _Optional[int] = ..., payload: _Optional[bytes] = ..., chunk: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("last_seq", "requests", "settled_below")
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SETTLED_BELOW_FIELD_NUMBER: _ClassVar[int]
    last_seq: int
    requests: _containers.RepeatedCompositeFieldContainer[SyndromeRequest]
    settled_below: int
    def __init__(self, last_seq: _Optional[int] = ..., requests: _Optional[_Iterable[_Union[SyndromeRequest, _Mapping]]] = ..., settled_below: _Optional[int] = ...) -> None: ...

class SyndromeRequest(_message.Message):
    __slots__ = ("window", "plane", "first_bit", "end_bit", "direct")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    PLANE_FIELD_NUMBER: _ClassVar[int]
    FIRST_BIT_FIELD_NUMBER: _ClassVar[int]
    END_BIT_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FIELD_NUMBER: _ClassVar[int]
    window: int
    plane: int
    first_bit: int
    end_bit: int
    direct: bool
    def __init__(self, window: _Optional[int] = ..., plane: _Optional[int] = ..., first_bit: _Optional[int] = ..., end_bit: _Optional[int] = ..., direct: _Optional[bool] = ...) -> None: ...

class SyndromeReply(_message.Message):
    __slots__ = ("blocks",)
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[SyndromeBlock]
    def __init__(self, blocks: _Optional[_Iterable[_Union[SyndromeBlock, _Mapping]]] = ...) -> None: ...

class SyndromeBlock(_message.Message):
    __slots__ = ("window", "plane", "first_bit", "end_bit", "direct", "bits", "crc32")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    PLANE_FIELD_NUMBER: _ClassVar[int]
    FIRST_BIT_FIELD_NUMBER: _ClassVar[int]
    END_BIT_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    window: int
    plane: int
    first_bit: int
    end_bit: int
    direct: bool
    bits: bytes
    crc32: int
    def __init__(self, window: _Optional[int] = ..., plane: _Optional[int] = ..., first_bit: _Optional[int] = ..., end_bit: _Optional[int] = ..., direct: _Optional[bool] = ..., bits: _Optional[bytes] = ..., crc32: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("group", "include_samples", "samples_f32le")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_F32LE_FIELD_NUMBER: _ClassVar[int]
    group: str
    include_samples: bool
    samples_f32le: bool
    def __init__(self, group: _Optional[str] = ..., include_samples: _Optional[bool] = ..., samples_f32le: _Optional[bool] = ...) -> None: ...

class Reconstruction(_message.Message):
    __slots__ = ("group", "window", "shape", "samples", "present", "payload_bytes", "capture_time", "reconstructed_time", "sample_offset", "samples_f32le")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTED_TIME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_F32LE_FIELD_NUMBER: _ClassVar[int]
    group: str
    window: int
    shape: _containers.RepeatedScalarFieldContainer[int]
    samples: _containers.RepeatedScalarFieldContainer[float]
    present: _containers.RepeatedScalarFieldContainer[bool]
    payload_bytes: _containers.RepeatedScalarFieldContainer[int]
    capture_time: _containers.RepeatedScalarFieldContainer[float]
    reconstructed_time: float
    sample_offset: int
    samples_f32le: bytes
    def __init__(self, group: _Optional[str] = ..., window: _Optional[int] = ..., shape: _Optional[_Iterable[int]] = ..., samples: _Optional[_Iterable[float]] = ..., present: _Optional[_Iterable[bool]] = ..., payload_bytes: _Optional[_Iterable[int]] = ..., capture_time: _Optional[_Iterable[float]] = ..., reconstructed_time: _Optional[float] = ..., sample_offset: _Optional[int] = ..., samples_f32le: _Optional[bytes] = ...) -> None: ...

class AuditWindow(_message.Message):
    __slots__ = ("group", "node_id", "source_index", "bundle_id", "window", "shape", "samples_f32le")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_F32LE_FIELD_NUMBER: _ClassVar[int]
    group: str
    node_id: str
    source_index: int
    bundle_id: str
    window: int
    shape: _containers.RepeatedScalarFieldContainer[int]
    samples_f32le: bytes
    def __init__(self, group: _Optional[str] = ..., node_id: _Optional[str] = ..., source_index: _Optional[int] = ..., bundle_id: _Optional[str] = ..., window: _Optional[int] = ..., shape: _Optional[_Iterable[int]] = ..., samples_f32le: _Optional[bytes] = ...) -> None: ...

class AuditReply(_message.Message):
    __slots__ = ("matched",)
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    matched: bool
    def __init__(self, matched: _Optional[bool] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SourceDescription(_message.Message):
    __slots__ = ("name", "channel_names", "input_shape", "latent_shape", "frame_stride", "quality_points", "default_quality", "coding")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_NAMES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    LATENT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    FRAME_STRIDE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_POINTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_QUALITY_FIELD_NUMBER: _ClassVar[int]
    CODING_FIELD_NUMBER: _ClassVar[int]
    name: str
    channel_names: _containers.RepeatedScalarFieldContainer[str]
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    latent_shape: _containers.RepeatedScalarFieldContainer[int]
    frame_stride: int
    quality_points: _containers.RepeatedScalarFieldContainer[str]
    default_quality: str
    coding: str
    def __init__(self, name: _Optional[str] = ..., channel_names: _Optional[_Iterable[str]] = ..., input_shape: _Optional[_Iterable[int]] = ..., latent_shape: _Optional[_Iterable[int]] = ..., frame_stride: _Optional[int] = ..., quality_points: _Optional[_Iterable[str]] = ..., default_quality: _Optional[str] = ..., coding: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("bundle_id", "modality", "sample_rate", "sources", "device", "deadline_s", "max_batch", "groups")
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    modality: str
    sample_rate: float
    sources: _containers.RepeatedCompositeFieldContainer[SourceDescription]
    device: str
    deadline_s: float
    max_batch: int
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bundle_id: _Optional[str] = ..., modality: _Optional[str] = ..., sample_rate: _Optional[float] = ..., sources: _Optional[_Iterable[_Union[SourceDescription, _Mapping]]] = ..., device: _Optional[str] = ..., deadline_s: _Optional[float] = ..., max_batch: _Optional[int] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...

class ReconstructionBatch(_message.Message):
    __slots__ = ("windows",)
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    windows: _containers.RepeatedCompositeFieldContainer[Reconstruction]
    def __init__(self, windows: _Optional[_Iterable[_Union[Reconstruction, _Mapping]]] = ...) -> None: ...
