"""Real ECG records: WFDB (any PhysioNet record) and DICOM 12-lead waveforms.

Readers return an :class:`EcgRecord` in physical units (mV) with standard lead names,
which can be resampled (``scipy.signal.resample_poly``), narrowed to named leads and cut
into windows of a given length and hop. Two edge source schemes replay records:

* ``wfdb:PATH[#leads=I,II,loop=1,fs=500,hop=1024,start=0,count=10]``
* ``dicom:PATH[#...]`` (``dicom:pydicom`` is the 12-lead ECG that ships with pydicom)

Without ``leads=`` node ``i`` gets the i-th group of C consecutive leads of the record
(C from the bundle's input shape); ``fs`` is the model's sample rate (default 500 Hz).
The node paces replay from ``window_period`` (hop / fs), like every other source.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ndsc.sources.base import SourceError, Window, register_source
from ndsc.sources.synthetic import STANDARD_LEADS

#: name of the ECG that pydicom ships (``pydicom.examples.waveform``), usable as a path
PYDICOM_RECORD = "pydicom"
#: default model sample rate of ECG bundles (Hz)
DEFAULT_FS = 500.0

_UNIT_TO_MV = {
    "mv": 1.0,
    "millivolt": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "v": 1e3,
    "volt": 1e3,
    "nv": 1e-6,
}
_CANONICAL = {name.lower(): name for name in STANDARD_LEADS}


def canonical_lead(name: str) -> str:
    """Standard spelling of a lead name: ``i``→``I``, ``AVR``→``aVR``, ``Lead V1``→``V1``.

    Names that are not one of the 12 standard leads (``MLII``, ``vx``) are returned as given.
    """
    key = re.sub(r"\(.*?\)", "", name).strip()
    key = re.sub(r"^lead\s+", "", key, flags=re.IGNORECASE).strip().lower()
    return _CANONICAL.get(key, name.strip())


@dataclass(frozen=True)
class EcgRecord:
    """One multi-lead recording in mV.

    Attributes:
        name: record name (``HR06000``, ``s0010_re``).
        signal: float32 (leads, samples) in mV; NaN marks missing samples.
        fs: sample rate in Hz.
        leads: standard lead names, one per row of ``signal``.
        patient: patient id if the source states one (PTB-XL, PTB, DICOM), else None.
        path: where it was read from (``pydicom`` for the shipped record).
    """

    name: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    patient: str | None = None
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.signal.shape[1] / self.fs

    def content_hash(self) -> str:
        """sha256 of the samples (finds byte-identical recordings filed under two names)."""
        return hashlib.sha256(np.ascontiguousarray(self.signal).tobytes()).hexdigest()

    def select(self, leads: Sequence[str]) -> "EcgRecord":
        """The record narrowed to ``leads`` (any spelling), in that order."""
        wanted = [canonical_lead(l) for l in leads]
        missing = [l for l in wanted if l not in self.leads]
        if missing:
            raise SourceError(f"record {self.name} has no lead(s) {missing}; it has {list(self.leads)}")
        rows = [self.leads.index(l) for l in wanted]
        return replace(self, signal=self.signal[rows], leads=tuple(wanted))

    def resample(self, fs: float) -> "EcgRecord":
        """The record at ``fs`` Hz (polyphase FIR, anti-aliased); unchanged if already there."""
        if fs <= 0:
            raise SourceError(f"sample rate must be positive, got {fs}")
        if abs(fs - self.fs) < 1e-9:
            return self
        return replace(self, signal=resample_signal(self.signal, self.fs, fs), fs=float(fs))

    def windows(self, length: int, hop: int | None = None) -> np.ndarray:
        """Windows (n, leads, length) every ``hop`` samples (default: ``length``)."""
        return cut_windows(self.signal, length, hop)


def resample_signal(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample (channels, samples) from ``fs_in`` to ``fs_out`` with ``resample_poly``.

    NaN samples would smear over the whole filter length, so they are filled by linear
    interpolation first and the samples they map to are set back to NaN.
    """
    from scipy.signal import resample_poly

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    if abs(float(ratio) - fs_out / fs_in) > 1e-6:
        raise SourceError(f"cannot resample {fs_in} Hz to {fs_out} Hz with a rational ratio")
    x = np.asarray(signal, dtype=np.float64)
    nan = ~np.isfinite(x)
    if nan.any():
        x = x.copy()
        t = np.arange(x.shape[1])
        for row in range(x.shape[0]):
            bad = nan[row]
            if bad.all():
                x[row] = 0.0
            elif bad.any():
                x[row, bad] = np.interp(t[bad], t[~bad], x[row, ~bad])
    out = resample_poly(x, ratio.numerator, ratio.denominator, axis=1)
    if nan.any():
        n_out = out.shape[1]
        src = np.minimum((np.arange(n_out) * fs_in / fs_out).astype(int), x.shape[1] - 1)
        out[nan[:, src]] = np.nan
    return out.astype(np.float32)


def cut_windows(signal: np.ndarray, length: int, hop: int | None = None) -> np.ndarray:
    """(channels, samples) → (n, channels, length) windows starting every ``hop`` samples."""
    hop = hop or length
    if length <= 0 or hop <= 0:
        raise SourceError("window length and hop must be positive")
    n = 0 if signal.shape[1] < length else 1 + (signal.shape[1] - length) // hop
    if n == 0:
        return np.zeros((0, signal.shape[0], length), dtype=np.float32)
    idx = np.arange(n)[:, None] * hop + np.arange(length)[None, :]  # (n, length)
    return np.ascontiguousarray(signal[:, idx].transpose(1, 0, 2), dtype=np.float32)


def _to_mv(units: str) -> float:
    key = (units or "mV").strip().lower()
    if key not in _UNIT_TO_MV:
        raise SourceError(f"unknown signal unit {units!r} (expected mV, uV or V)")
    return _UNIT_TO_MV[key]


def read_wfdb(path: str | Path) -> EcgRecord:
    """Read a WFDB record (``path`` without extension, as ``wfdb.rdrecord`` takes it).

    ECG channels are converted to mV; channels in other units (PLETH, RESP) are dropped.
    A ``patientNNN`` parent folder (PTB Diagnostic) gives the patient id.
    """
    import wfdb

    base = str(path)
    for ext in (".hea", ".dat", ".mat"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    if not Path(base + ".hea").is_file():
        raise SourceError(f"no WFDB header {base}.hea")
    try:
        rec = wfdb.rdrecord(base)
    except Exception as exc:  # wfdb raises a mix of ValueError/IndexError/OSError on bad files
        raise SourceError(f"cannot read WFDB record {base}: {exc}") from exc
    rows, leads = [], []
    for k, (name, unit) in enumerate(zip(rec.sig_name, rec.units)):
        try:
            scale = _to_mv(unit)
        except SourceError:
            continue  # not a voltage channel
        rows.append(rec.p_signal[:, k] * scale)
        leads.append(canonical_lead(name))
    if not rows:
        raise SourceError(f"record {base} has no voltage channels (units {rec.units})")
    parent = Path(base).parent.name
    patient = parent if re.fullmatch(r"patient\d+", parent) else None
    return EcgRecord(
        name=Path(base).name,
        signal=np.stack(rows).astype(np.float32),
        fs=float(rec.fs),
        leads=tuple(leads),
        patient=patient,
        path=base,
        meta={"comments": list(rec.comments or [])},
    )


def read_dicom(path: str | Path) -> EcgRecord:
    """Read the first multi-channel waveform group of a DICOM ECG (``pydicom`` = shipped record)."""
    import pydicom

    if str(path) == PYDICOM_RECORD:
        from pydicom import examples

        ds, origin = examples.waveform, PYDICOM_RECORD
    else:
        try:
            ds, origin = pydicom.dcmread(str(path)), str(path)
        except Exception as exc:
            raise SourceError(f"cannot read DICOM file {path}: {exc}") from exc
    if "WaveformSequence" not in ds:
        raise SourceError(f"{origin} has no waveform")
    # The rhythm group holds the continuous recording (later groups are e.g. median beats).
    index = next(
        (k for k, g in enumerate(ds.WaveformSequence) if str(g.get("MultiplexGroupLabel", "")).upper() == "RHYTHM"), 0
    )
    group = ds.WaveformSequence[index]
    raw = ds.waveform_array(index)  # (samples, channels), sensitivity and baseline applied
    rows, leads = [], []
    for k, ch in enumerate(group.ChannelDefinitionSequence):
        unit = ch.ChannelSensitivityUnitsSequence[0].CodeValue if "ChannelSensitivityUnitsSequence" in ch else "mV"
        rows.append(raw[:, k] * _to_mv(unit))
        leads.append(canonical_lead(str(ch.ChannelSourceSequence[0].CodeMeaning)))
    patient = str(ds.get("PatientID", "")) or None
    name = Path(origin).stem if origin != PYDICOM_RECORD else "pydicom-waveform_ecg"
    return EcgRecord(
        name=name,
        signal=np.stack(rows).astype(np.float32),
        fs=float(group.SamplingFrequency),
        leads=tuple(leads),
        patient=patient,
        path=origin,
    )


def read_record(path: str | Path) -> EcgRecord:
    """Read a DICOM (``.dcm`` or ``pydicom``) or WFDB record."""
    p = str(path)
    if p == PYDICOM_RECORD or p.lower().endswith(".dcm"):
        return read_dicom(p)
    return read_wfdb(p)


def find_records(root: str | Path) -> list[str]:
    """Every WFDB record (header) and ``.dcm`` file under ``root``, sorted, without extensions."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a directory")
    found = [str(h.with_suffix("")) for h in root.rglob("*.hea")] + [str(d) for d in root.rglob("*.dcm")]
    return sorted(found)


# --- the edge source schemes --------------------------------------------------------------


def parse_options(args: str) -> dict[str, str]:
    """``leads=I,II,loop=1`` → ``{"leads": "I,II", "loop": "1"}``.

    A comma-separated item without ``=`` continues the previous value, so lead lists
    need no quoting; ``;`` also separates leads (``leads=I;II``).
    """
    out: dict[str, str] = {}
    last: str | None = None
    for part in filter(None, (p.strip() for p in args.split(","))):
        key, sep, value = part.partition("=")
        if sep:
            last = key.strip()
            out[last] = value.strip()
        elif last is not None:
            out[last] += "," + part
        else:
            raise SourceError(f"expected key=value, got {part!r}")
    return out


def split_spec(args: str) -> tuple[str, dict[str, str]]:
    """``PATH#opts`` → (PATH, options)."""
    target, _, opts = args.partition("#")
    return target, parse_options(opts)


def parse_leads(value: str) -> tuple[str, ...]:
    return tuple(canonical_lead(l) for l in re.split(r"[;,]", value) if l.strip())


class RecordSource:
    """Replays one record's lead group as windows for an edge node.

    Args:
        record: the record (any rate; resampled to ``fs``).
        leads: the node's leads, C of them.
        length: window length T in samples at ``fs``.
        fs: model sample rate.
        hop: samples between window starts (default ``length``).
        loop: start over at the end (window indices keep counting).
        start, count: first window and number of windows (None: to the end / forever if looping).
    """

    def __init__(
        self,
        record: EcgRecord,
        leads: Sequence[str],
        length: int,
        fs: float = DEFAULT_FS,
        hop: int | None = None,
        loop: bool = False,
        start: int = 0,
        count: int | None = None,
    ):
        self.record = record.select(leads).resample(fs)
        self.channel_names = tuple(self.record.leads)
        self.length, self.hop, self.fs = int(length), int(hop or length), float(fs)
        self.window_period = self.hop / self.fs
        self.loop, self.start, self.count = loop, int(start), count
        self._windows = self.record.windows(self.length, self.hop)
        if len(self._windows) == 0:
            raise SourceError(
                f"record {record.name} ({record.duration:.1f} s) is shorter than one window "
                f"of {self.length} samples at {self.fs} Hz"
            )
        #: windows with missing (NaN) samples (yielded; the node skips and counts them)
        self.missing_windows = 0

    def window(self, index: int) -> np.ndarray:
        """Data of window ``index`` (C, T) as :meth:`windows` yields it (wrapping when looping)."""
        n = len(self._windows)
        if index < 0 or (index >= n and not self.loop):
            raise IndexError(f"window {index} outside the record's {n} windows")
        return self._windows[index % n]

    def windows(self) -> Iterator[Window]:
        n = len(self._windows)
        k = self.start
        while self.count is None or k < self.start + self.count:
            if k >= n and not self.loop:
                return
            data = self._windows[k % n]
            if not np.isfinite(data).all():
                # Yielded anyway: the edge node's check_window rejects and counts it.
                self.missing_windows += 1
            yield Window(k, data, 0.0)
            k += 1


def open_record_source(
    record: EcgRecord, opts: dict[str, str], source_index: int, input_shape: tuple[int, ...]
) -> RecordSource:
    """Build a :class:`RecordSource` from parsed spec options (shared by wfdb: and dicom:)."""
    opts = dict(opts)
    if len(input_shape) != 2:
        raise SourceError(f"ECG sources give (leads, samples) windows, the bundle expects {input_shape}")
    c, t = input_shape
    if "leads" in opts:
        leads = parse_leads(opts.pop("leads"))
        if len(leads) != c:
            raise SourceError(f"{len(leads)} leads {list(leads)} given, the node's encoder takes {c}")
    else:
        order = [l for l in STANDARD_LEADS if l in record.leads] or list(record.leads)
        groups = [order[i : i + c] for i in range(0, len(order) - c + 1, c)]
        if not 0 <= source_index < len(groups):
            raise SourceError(
                f"source index {source_index} out of range: record {record.name} has "
                f"{len(groups)} groups of {c} leads; name them with #leads="
            )
        leads = tuple(groups[source_index])
    try:
        fs = float(opts.pop("fs", DEFAULT_FS))
        hop = int(opts.pop("hop", t))
        loop = opts.pop("loop", "0").lower() in ("1", "true", "yes")
        start = int(opts.pop("start", 0))
        count = int(opts.pop("count")) if "count" in opts else None
    except ValueError as exc:
        raise SourceError(f"bad ECG source option: {exc}") from exc
    if opts:
        raise SourceError(f"unknown ECG source options {sorted(opts)} (known: leads, fs, hop, loop, start, count)")
    return RecordSource(record, leads, t, fs=fs, hop=hop, loop=loop, start=start, count=count)


@register_source("wfdb")
def _open_wfdb(args: str, source_index: int, input_shape: tuple[int, ...]) -> RecordSource:
    """``wfdb:PATH#leads=I,II,loop=1,fs=500,hop=1024,start=0,count=10``."""
    path, opts = split_spec(args)
    if not path:
        raise SourceError("wfdb: needs a record path, e.g. wfdb:data/HR06000#leads=I,II,III")
    return open_record_source(read_wfdb(path), opts, source_index, input_shape)


@register_source("dicom")
def _open_dicom(args: str, source_index: int, input_shape: tuple[int, ...]) -> RecordSource:
    """``dicom:PATH.dcm#...`` or ``dicom:pydicom`` (the ECG that ships with pydicom)."""
    path, opts = split_spec(args)
    return open_record_source(read_dicom(path or PYDICOM_RECORD), opts, source_index, input_shape)
