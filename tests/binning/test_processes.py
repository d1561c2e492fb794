"""Binning through the command line: `ndsc decoder` and two `ndsc edge` processes, one syndrome-coded."""
from __future__ import annotations

import signal

from app.demo import scrape
from tests.binning.conftest import test_windows
from tests.serving.test_processes import _ready, _spawn


def test_ndsc_decoder_and_edges_serve_a_binning_bundle_with_feedback(binning_bundle):
    from training.binning import measure_offline

    bundle = str(binning_bundle)
    _, windows = test_windows(binning_bundle)
    decoder = _spawn(["decoder", "--bundle", bundle, "--listen", "127.0.0.1:0", "--metrics-port", "0",
                      "--deadline", "10"])
    try:
        ready = _ready(decoder, "NDSC_DECODER_READY")
        edges = [_spawn(["edge", "--bundle", bundle, "--source-index", str(i), "--decoder", ready["grpc"],
                         "--metrics-port", "-1", "--fast"]) for i in range(2)]
        rcs = [e.wait(timeout=120) for e in edges]
        logs = [e.stderr.read() for e in edges]
        metrics = scrape(ready["metrics"])
        decoder.send_signal(signal.SIGTERM)
        assert decoder.wait(timeout=30) == 0
    finally:
        if decoder.poll() is None:
            decoder.kill()
            decoder.wait()
    assert rcs == [0, 0], logs

    def value(name, **labels):
        key = tuple(sorted({"group": "default", **labels}.items()))
        return metrics.get((name, key), 0.0)

    offline = measure_offline(binning_bundle, windows)
    assert value("ndsc_reconstructions_total") == len(windows)
    assert value("ndsc_syndrome_windows_total", source="1", outcome="decoded") == len(windows)
    assert value("ndsc_syndrome_requests_total", source="1", kind="more") == sum(r["requests"][1]
                                                                                 for r in offline["windows"])
    for i in (0, 1):
        assert 8 * value("ndsc_uplink_payload_bytes_total", node=f"node{i}", source=str(i)) == sum(
            r["bits"][i] for r in offline["windows"])


async def _restart_until_done(bundle, port: int, state, streaming, timeout: float, deadline: float = 10):
    """Start the decoder again on ``state``; once ``streaming`` (the edges' runs) ends, stop it (SIGTERM)."""
    import asyncio

    from tests.reliability.test_restart import _start_decoder

    decoder = await asyncio.to_thread(_start_decoder, bundle, port, state, deadline)
    try:
        result = await asyncio.wait_for(streaming, timeout)
        decoder.send_signal(signal.SIGTERM)
        await asyncio.to_thread(decoder.wait, 60)
    finally:
        if decoder.poll() is None:
            decoder.kill()
    return result


def test_no_window_lost_or_left_undecoded_across_a_decoder_restart(binning_bundle, tmp_path):
    """SIGKILL mid-stream, restart on the same journal: the restored windows are asked for their
    syndromes again, the edge still keeps them, and every window is decoded once, both sources."""
    import asyncio
    import sqlite3

    from tests.reliability.test_restart import Collector, _free_port, _start_decoder
    from tests.serving.conftest import edge_node

    n_windows = 60
    spec = f"gaussian:n=2,rho=0.9,seed=3,start=0,count={n_windows},rate=10240"  # 512 samples: 50 ms a window
    port, state = _free_port(), tmp_path / "state"
    address = f"127.0.0.1:{port}"

    async def scenario():
        first = await asyncio.to_thread(_start_decoder, binning_bundle, port, state)
        sub1 = Collector(address)
        nodes = [edge_node(binning_bundle, i, address, source=spec, fast=False, backoff_initial=0.05,
                           backoff_max=0.5) for i in range(2)]
        streaming = asyncio.gather(*(n.run() for n in nodes))
        while len(sub1.items) < 15:  # mid-stream
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        await sub1.task
        killed_at = len(sub1.items)
        counts = await _restart_until_done(binning_bundle, port, state, streaming, 240)
        await sub1.channel.close()
        return counts, killed_at, nodes

    counts, killed_at, nodes = asyncio.run(scenario())
    assert counts == [n_windows, n_windows] and killed_at < n_windows - 15
    assert all(n.metrics.reconnects._value.get() >= 1 for n in nodes)
    assert nodes[1].syndrome.settled  # the edge was told every window it kept is settled
    db = sqlite3.connect(state / "journal.sqlite")
    decoded = db.execute("SELECT window, present FROM decoded ORDER BY window").fetchall()
    assert [w for w, _ in decoded] == list(range(n_windows))
    assert all(present == "11" for _, present in decoded)  # the syndrome source decoded, never estimated


def test_a_window_is_settled_only_once_its_decoding_is_journaled(binning_bundle, tmp_path):
    """SIGKILL while decoded windows wait for their journal commit (held up by another writer's lock
    on the journal): the edge was not told to forget them, so the restarted decoder asks again and
    decodes them (settling on leaving the binning stage lost them: that source was estimated)."""
    import asyncio
    import sqlite3

    from tests.reliability.test_restart import _free_port, _start_decoder
    from tests.serving.conftest import edge_node

    n_windows, deadline = 5, 2.0
    # source 1 alone: each window is released at the aligner deadline without its side source, so the
    # decoder asks for the direct payload (one round trip, no BP) and decodes it
    spec = f"gaussian:n=2,rho=0.9,seed=3,start=0,count={n_windows}"
    port, state = _free_port(), tmp_path / "state"
    journal = state / "journal.sqlite"

    def journaled(sql: str) -> int:
        with sqlite3.connect(journal) as db:
            return db.execute(sql).fetchone()[0]

    async def wait_for(condition, what: str, timeout: float = 60.0) -> None:
        end = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < end, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def scenario():
        first = await asyncio.to_thread(_start_decoder, binning_bundle, port, state, deadline)
        node = edge_node(binning_bundle, 1, f"127.0.0.1:{port}", source=spec, backoff_initial=0.05, backoff_max=0.5)
        streaming = asyncio.ensure_future(node.run())
        await wait_for(lambda: journal.exists() and journaled("SELECT COUNT(*) FROM frames") == n_windows,
                       "the frames in the journal")
        lock = sqlite3.connect(journal, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the decoder's next commit (its decoded windows) waits for this
        answered = node.syndrome.metrics.request("direct")
        await wait_for(lambda: answered._value.get() == n_windows, "the direct answers")
        await asyncio.sleep(0.5)  # time for any Ack that settles them to arrive
        kept_at_kill = not node.syndrome.settled
        first.send_signal(signal.SIGKILL)
        first.wait()
        lock.execute("ROLLBACK")
        lock.close()
        assert journaled("SELECT COUNT(*) FROM decoded") == 0  # the kill landed in the gap
        # the restarted decoder waits longer for answers (twice its deadline) than the first: on a loaded
        # machine the edge's reconnect and answer may take seconds, and a timeout would estimate the source
        count = await _restart_until_done(binning_bundle, port, state, streaming, 120, 4 * deadline)
        return count, kept_at_kill, node

    count, kept_at_kill, node = asyncio.run(scenario())
    db = sqlite3.connect(journal)
    decoded = db.execute("SELECT window, present FROM decoded ORDER BY window").fetchall()
    assert count == n_windows
    assert decoded == [(w, "01") for w in range(n_windows)]  # source 1 decoded (source 0 never sent), not estimated
    assert kept_at_kill  # decoded but not yet journaled: not settled, so the edge still kept the windows
    assert node.metrics.reconnects._value.get() >= 1 and node.syndrome.settled
    assert node.syndrome.metrics.request("forgotten")._value.get() == 0
