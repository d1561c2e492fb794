"""The demo on a real ECG record (``ndsc demo --ecg RECORD``): one node per lead group.

:func:`ecg_sources` gives each node a looping replay of its own leads of the record;
:class:`LeadQuality` subscribes to the decoder's reconstructions and compares each
decoded lead with the same window of the record (read here with the same reader), so
the demo shows PRDN per lead of what really came out of the joint decoder, from the first
decoded window on (every window, not a 1-in-N audit sample). Edge-side code: no torch.
"""
from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np

from ndsc.bundle import Bundle
from ndsc.errors import UsageError
from ndsc.sources import open_source
from ndsc.sources.ecg import PYDICOM_RECORD, RecordSource
from ndsc.wire import pb, pb_grpc


def ecg_sources(bundle: Bundle, record: str, nodes: int | None = None) -> list[str]:
    """Source spec per node: ``wfdb:``/``dicom:`` replay of the node's leads, looping, at the bundle's rate."""
    if bundle.modality != "ecg":
        raise UsageError(f"--ecg needs an ECG bundle; {bundle.path} is {bundle.modality!r}",
                         "leave --bundle out (the shipped ECG bundle) or give an ECG bundle")
    scheme = "dicom" if record == PYDICOM_RECORD or record.lower().endswith(".dcm") else "wfdb"
    if scheme == "wfdb":
        record = str(Path(record).with_suffix("")) if record.endswith((".hea", ".dat", ".mat")) else record
    n = nodes or bundle.n_sources
    return [f"{scheme}:{record}#leads={','.join(s.channel_names)},loop=1,fs={bundle.sample_rate:g}"
            for s in bundle.sources[:n]]


class LeadQuality:
    """Running PRDN per lead of the live reconstructions against the record.

    PRDN = 100·sqrt(Σ(x − x̂)² / Σ(x − mean_window(x))²) over every decoded window so far, on
    the signal as recorded; leads of a node the decoder had to estimate are left out.
    """

    def __init__(self, bundle: Bundle, specs: list[str], decoder: str, group: str):
        self.bundle = bundle
        self.sources: list[RecordSource] = [open_source(spec, i, bundle.sources[i].input_shape)
                                            for i, spec in enumerate(specs)]
        self.leads = [name for src in self.sources for name in src.channel_names]
        self.sums = np.zeros((len(self.leads), 2))  # per lead: Σ err², Σ centred²
        self.windows = 0
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(decoder)
        self._call = pb_grpc.FusionDecoderStub(self._channel).Subscribe(
            pb.SubscribeRequest(group=group, include_samples=True))
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        try:
            for r in self._call:
                x_hat = np.asarray(r.samples, dtype=np.float64).reshape(tuple(r.shape))  # (N, C, T)
                self.add(int(r.window), x_hat, list(r.present))
        except grpc.RpcError:
            pass  # the decoder stopped or the demo closed the stream

    def add(self, window: int, x_hat: np.ndarray, present: list[bool]) -> None:
        """Accumulate one reconstruction (N, C, T) of ``window``; estimated nodes' leads are left out."""
        row = 0
        with self._lock:
            for i, src in enumerate(self.sources):
                c = len(src.channel_names)
                if present[i]:
                    x = src.window(window).astype(np.float64)
                    self.sums[row:row + c, 0] += ((x - x_hat[i]) ** 2).sum(axis=1)
                    self.sums[row:row + c, 1] += ((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
                row += c
            self.windows += 1

    def prdn(self) -> dict[str, float]:
        with self._lock:
            return {lead: 100 * float(np.sqrt(e / d)) for lead, (e, d) in zip(self.leads, self.sums) if d > 0}

    def render(self) -> str:
        """The line under the demo table: PRDN per lead over every decoded window so far."""
        per_lead = self.prdn()
        if not per_lead:
            return "PRDN per lead: - (no window decoded yet)"
        return (f"PRDN per lead over {self.windows} decoded windows (vs the record, as recorded): "
                + " ".join(f"{lead} {v:.1f}%" for lead, v in per_lead.items()))

    def close(self) -> None:
        self._call.cancel()
        self._channel.close()
