"""The wire contract: stubs are current, batches round-trip, overhead is counted."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from ndsc.wire import FrameData, crc32, pack_batch, pb, protocol_bytes, unpack_batch


def test_checked_in_stubs_match_the_proto():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _frames(windows, t0=1_700_000_000_000_000, period_us=1_024_000):
    return [FrameData(seq=i + 7, window=w, capture_us=t0 + w * period_us, crc32=crc32(bytes([w % 256]) * 3),
                      payload=bytes([w % 256]) * 3) for i, w in enumerate(windows)]


def test_batch_round_trips_with_window_gaps():
    frames = _frames([40, 41, 42, 45, 46])
    assert list(unpack_batch(pack_batch(frames))) == frames


def test_consecutive_frames_cost_only_crc_and_payload_plus_a_capture_delta():
    frames = _frames(range(10))
    batch = pack_batch(frames)
    # frames after the first: submessage tag+len (2) + delta (1+3) + crc (5) + payload (1+1+3)
    per_frame = (batch.ByteSize() - pack_batch(frames[:1]).ByteSize()) / 9
    assert per_frame == 16
    msg = pb.UplinkMessage(batch=batch)
    assert protocol_bytes(msg) == msg.ByteSize() - 30 + 5


def test_pack_refuses_non_consecutive_seqs():
    frames = _frames([1, 2])
    bad = [frames[0], FrameData(frames[1].seq + 1, 2, frames[1].capture_us, 0, b"")]
    with pytest.raises(ValueError):
        pack_batch(bad)


def test_a_reconstruction_batch_is_its_serialized_windows_under_one_field_split_at_the_budget():
    from fusion_decoder.broadcast import pack_reconstruction_batch

    windows = [pb.Reconstruction(group="g", window=k, samples_f32le=bytes(4 * k)) for k in range(1, 40)]
    serialized = [w.SerializeToString() for w in windows]
    whole, rest = pack_reconstruction_batch(serialized, 1 << 20)
    assert rest == [] and list(pb.ReconstructionBatch.FromString(whole).windows) == windows
    got, todo, sizes = [], serialized, []
    while todo:  # a 200-byte budget: several messages, each within it unless one window alone exceeds it
        message, todo = pack_reconstruction_batch(todo, 200)
        batch = list(pb.ReconstructionBatch.FromString(message).windows)
        assert len(message) <= 200 or len(batch) == 1
        got += batch
        sizes.append(len(batch))
    assert got == windows and len(sizes) > 1 and max(sizes) > 1
