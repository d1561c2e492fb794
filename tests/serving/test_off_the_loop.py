"""Work kept off the event loop: samples as f32le bytes, each payload decoded once, group commits."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from fusion_decoder.journal import Journal, SessionRow
from ndsc.wire import FrameData, crc32
from tests.serving.conftest import Subscription, edge_node, running_decoder, x_hat_by_window

SPEC = "gaussian:n=2,rho=0.9,seed=0,start=0,count=12"


def test_subscribers_get_samples_as_f32le_bytes_or_as_floats_for_old_clients_and_each_payload_is_decoded_once(
        gaussian_bundle):
    async def scenario():
        async with running_decoder(gaussian_bundle) as (server, address, registry):
            new = Subscription(address, f32le=True)
            old = Subscription(address)
            await new.wait_started(registry, 2)
            await asyncio.gather(*(edge_node(gaussian_bundle, i, address, source=SPEC).run() for i in range(2)))
            decodes = server.runtime.entropy_decodes
        return await new.finish(), await old.finish(), decodes

    new, old, decodes = asyncio.run(scenario())
    assert len(new) == len(old) == 12
    assert all(r.samples_f32le and not r.samples for r in new)
    assert all(r.samples and not r.samples_f32le for r in old)
    a, b = x_hat_by_window(new), x_hat_by_window(old)
    for window in a:
        assert a[window].shape == tuple(new[0].shape)
        np.testing.assert_array_equal(a[window], b[window])
    assert decodes == 2 * 12  # checked at the uplink, reused at decoding: never twice


def _frames(k: int, window: int) -> list[FrameData]:
    return [FrameData(1, window, 0, crc32(bytes([k])), bytes([k]))]


def test_frames_of_concurrent_streams_share_one_journal_transaction_and_all_are_durable(tmp_path):
    journal = Journal(tmp_path)

    async def scenario():
        await asyncio.gather(*(journal.commit_frames(SessionRow("g", f"n{k}", 0, k + 1, 1, k), 0, _frames(k, k))
                               for k in range(20)))

    asyncio.run(scenario())
    assert journal.commits == 1  # 20 streams' messages, one commit
    assert sorted(f.window for f in journal.held_frames()) == list(range(20))
    assert len(journal.sessions()) == 20
    journal.close()


def test_an_entry_the_journal_refuses_fails_alone_in_its_group_commit(tmp_path):
    journal = Journal(tmp_path)

    async def scenario():
        calls = [journal.commit_frames(SessionRow("g", f"n{k}", 0, k + 1, 1, k), 0,
                                       _frames(k, 2**63 if k == 3 else k)) for k in range(6)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(scenario())
    assert isinstance(results[3], OverflowError)  # SQLite INTEGER is signed 64-bit
    assert [r for k, r in enumerate(results) if k != 3] == [None] * 5
    assert sorted(f.window for f in journal.held_frames()) == [0, 1, 2, 4, 5]
    journal.close()


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300])
def test_f32le_and_float_fields_parse_to_the_same_samples_for_any_length(n):
    from fusion_decoder.aligner import AlignedWindow
    from fusion_decoder.broadcast import Decoded
    from ndsc.wire import pb

    x = np.random.default_rng(n).standard_normal((1, 1, n)).astype(np.float32)
    d = Decoded(AlignedWindow("g", 5, [b"x"], [1], 0.0), x, np.array([True]), 1.0)
    for fmt in ("floats", "f32le"):
        (raw,) = d.encode(fmt)
        r = pb.Reconstruction.FromString(raw)
        got = np.frombuffer(r.samples_f32le, "<f4") if fmt == "f32le" else np.asarray(r.samples, np.float32)
        np.testing.assert_array_equal(got, x.ravel())
        assert (r.group, r.window, list(r.shape)) == ("g", 5, [1, 1, n])
