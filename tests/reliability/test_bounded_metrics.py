"""Metrics stay bounded whatever clients send: capped label values, evicted series, process_* metrics."""
from __future__ import annotations

import asyncio
import re
import time

from prometheus_client import generate_latest

from ndsc.bundle import load_bundle
from tests.reliability.conftest import batch, encoded_windows, header
from tests.reliability.test_hostile_clients import HeldUplink
from tests.serving.conftest import raw_uplink, running_decoder


def group_labels(text: str) -> set[str]:
    return set(re.findall(r'group="([^"]*)"', text))


def total(registry, sample: str) -> float:
    return sum(s.value for m in registry.collect() for s in m.samples if s.name == sample)


async def reconstructed(registry, n: int) -> None:
    """Wait until ``n`` windows were published (their series all exist)."""
    end = time.monotonic() + 20
    while total(registry, "ndsc_reconstructions_total") < n and time.monotonic() < end:
        await asyncio.sleep(0.02)


def test_metric_series_and_scrape_size_are_bounded_whatever_groups_and_nodes_clients_invent(gaussian_bundle):
    bundle = load_bundle(gaussian_bundle)
    p0 = encoded_windows(gaussian_bundle, 1)[0][1][0]

    def name(k: int) -> str:  # the longest names allowed, so the bound holds for the worst case
        return f"g{k:03d}".ljust(64, "x")

    async def open_groups(address, ks):
        held = []
        for k in ks:  # one after the other: the first groups seen get the label slots
            held.append(HeldUplink(address, [header(bundle, group=name(k), node=name(k)), batch([p0])]))
            assert await held[-1].ack() == 0 and await held[-1].ack() == 1
        return held

    async def scenario():
        async with running_decoder(gaussian_bundle, deadline=0.1, group_idle=0.5, max_label_groups=3,
                                   max_label_nodes=4) as (server, address, registry):
            held = await open_groups(address, range(12))
            await reconstructed(registry, 12)
            first = generate_latest(registry).decode()
            held += await open_groups(address, range(12, 40))
            await reconstructed(registry, 40)
            second = generate_latest(registry).decode()
            # node ids are client-chosen too: 100 of them in one group (source 1, one after the other)
            for k in range(100):
                await raw_uplink(address, [header(bundle, group=name(0), node=f"n{k}", source=1)])
            sessions = sum(1 for g, _ in server.servicer.sessions._sessions if g == name(0))
            nodes = set(re.findall(f'group="{name(0)}",node="([^"]*)"', generate_latest(registry).decode()))
            for h in held:
                await h.close()
            # every idle group is evicted, and its series with it
            end = time.monotonic() + 20
            while (registry.get_sample_value("ndsc_groups_evicted_total") or 0) < 40 and time.monotonic() < end:
                await asyncio.sleep(0.05)
            await raw_uplink(address, [header(bundle, group="fresh"), batch([p0])])
            third = generate_latest(registry).decode()
        return first, second, sessions, nodes, third, registry

    first, second, sessions, nodes, third, registry = asyncio.run(scenario())
    assert group_labels(first) == {name(0), name(1), name(2), "_overflow"}
    assert group_labels(second) == group_labels(first)
    # 28 more groups cost the scrape nothing but a few digits of the overflow series' counts
    assert abs(len(second) - len(first)) < 512, (len(first), len(second))
    assert sessions == 64  # a group keeps at most 64 node sessions (the stalest inactive ones go)
    assert nodes == {name(0), "n0", "_overflow"}  # 4 (group, node) label slots: 3 taken before, then n0
    assert registry.get_sample_value("ndsc_groups_evicted_total") == 40
    assert not any(name(k) in third for k in range(40))  # evicted groups' series are gone
    assert "fresh" in group_labels(third)  # ...and their label slots are free again
    assert registry.get_sample_value("process_resident_memory_bytes") > 0
    assert registry.get_sample_value("process_open_fds") > 0
