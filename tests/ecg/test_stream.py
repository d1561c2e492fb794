"""The live int16 stream source: real sockets and pipes, good and malformed input."""
import io
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from ndsc.sources import SourceError, open_source
from ndsc.sources.ecg import read_record
from ndsc.sources.stream import MISSING, StreamSource, encode_block, encode_frames


@pytest.fixture(scope="module")
def limb_leads():
    """Leads I, II, III of the pydicom ECG at 500 Hz, mV (3, 5000)."""
    return read_record("pydicom").select(["I", "II", "III"]).resample(500).signal


def _source(data: bytes, **kw) -> StreamSource:
    return StreamSource(lambda: io.BytesIO(data), 3, 1024, kw.pop("fs", 500.0), kw.pop("gain", 1000.0), **kw)


def test_frames_become_windows_in_mv(limb_leads):
    src = _source(encode_frames(limb_leads, 1000.0, baseline=12), baseline=12)
    wins = list(src.windows())
    assert [w.index for w in wins] == [0, 1, 2, 3] and src.stats["windows"] == 4
    assert np.abs(wins[2].data - limb_leads[:, 2048:3072]).max() <= 0.5 / 1000 + 1e-6  # int16 at 1 µV


def test_a_faster_stream_is_resampled_to_the_model_rate():
    rec = read_record("pydicom").select(["I", "II", "III"])  # 1000 Hz
    src = _source(encode_frames(rec.signal, 400.0), fs=1000.0, gain=400.0)
    wins = list(src.windows())
    ref = rec.resample(500).signal
    assert len(wins) == 4 and np.sqrt(np.mean((wins[1].data - ref[:, 1024:2048]) ** 2)) < 0.01


def test_a_stream_ending_inside_a_frame_is_counted_not_fatal(limb_leads):
    src = _source(encode_frames(limb_leads[:, :2100], 1000.0) + b"\x07\x00\x01")
    assert len(list(src.windows())) == 2
    assert src.stats["short_frames"] == 1 and "inside a frame" in src.last_error


def test_missing_samples_skip_their_window(limb_leads):
    data = bytearray(encode_frames(limb_leads, 1000.0))
    data[(1500 * 3 + 1) * 2:(1500 * 3 + 2) * 2] = np.int16(MISSING).tobytes()  # lead II, sample 1500
    src = _source(bytes(data))
    wins = list(src.windows())
    assert [w.index for w in wins if np.isfinite(w.data).all()] == [0, 2, 3]  # the node skips window 1
    assert np.isnan(wins[1].data[1, 1500 - 1024]) and src.stats["missing_windows"] == 1


def test_blocks_with_the_wrong_channel_count_are_dropped(limb_leads):
    blocks = [encode_block(limb_leads[:, i:i + 500], 1000.0) for i in range(0, 5000, 500)]
    blocks.insert(3, encode_block(np.zeros((2, 500)), 1000.0))  # a 2-lead sender slips in
    src = _source(b"".join(blocks), framing="block")
    wins = list(src.windows())
    assert src.stats["wrong_channel_blocks"] == 1 and src.stats["missing_windows"] == 1
    assert [w.index for w in wins if np.isfinite(w.data).all()] == [0, 2, 3, 4]  # 1 covers the dropped samples
    assert np.allclose(wins[0].data, limb_leads[:, :1024], atol=1e-3)


def test_a_truncated_block_ends_the_stream_cleanly(limb_leads):
    data = encode_block(limb_leads[:, :1500], 1000.0) + encode_block(limb_leads[:, 1500:3000], 1000.0)[:-5]
    src = _source(data, framing="block")
    assert len(list(src.windows())) == 1 and src.stats["short_frames"] == 1 and src.stats["missing_windows"] == 0


def test_bad_stream_specs_are_clear_errors():
    with pytest.raises(SourceError, match="needs fs and gain"):
        open_source("stdin:#leads=I,II,III", 0, (3, 1024))
    with pytest.raises(SourceError, match="gain must be"):
        open_source("stdin:#fs=500,gain=0", 0, (3, 1024))
    with pytest.raises(SourceError, match="stream has 2 channels"):
        open_source("stdin:#fs=500,gain=1000,channels=2", 0, (3, 1024))
    with pytest.raises(SourceError, match="tcp:HOST:PORT"):
        open_source("tcp:localhost#fs=500,gain=1", 0, (3, 1024))
    with pytest.raises(SourceError, match="unknown stream options"):
        open_source("stdin:#fs=500,gain=1,colour=red", 0, (3, 1024))


def test_tcp_source_reads_a_real_socket(limb_leads):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def send():
        conn, _ = server.accept()
        with conn:
            payload = encode_frames(limb_leads, 1000.0)
            for i in range(0, len(payload), 999):  # arbitrary TCP segmentation
                conn.sendall(payload[i:i + 999])
        server.close()

    threading.Thread(target=send, daemon=True).start()
    src = open_source(f"tcp:127.0.0.1:{port}#fs=500,gain=1000,leads=I,II,III", 0, (3, 1024))
    wins = list(src.windows())
    assert src.channel_names == ("I", "II", "III") and len(wins) == 4
    assert np.abs(wins[3].data - limb_leads[:, 3072:4096]).max() < 1e-3


def test_tcp_source_can_listen_for_the_sender(limb_leads):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    src = open_source(f"tcp:127.0.0.1:{port}#fs=500,gain=1000,listen=1,timeout=10", 0, (3, 1024))
    out = []
    reader = threading.Thread(target=lambda: out.extend(src.windows()))
    reader.start()
    payload = encode_frames(limb_leads[:, :2048], 1000.0)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(payload)
            break
        except OSError:
            threading.Event().wait(0.05)
    reader.join(10)
    assert len(out) == 2


def test_stdin_source_reads_a_pipe(limb_leads):
    code = ("import sys\nfrom ndsc.sources import open_source\n"
            "src = open_source('stdin:#fs=500,gain=1000', 0, (3, 1024))\n"
            "print(sum(1 for _ in src.windows()), src.stats['short_frames'])\n")
    out = subprocess.run([sys.executable, "-c", code], input=encode_frames(limb_leads, 1000.0) + b"\x01",
                         capture_output=True, check=True, timeout=60)
    assert out.stdout.split() == [b"4", b"1"]
