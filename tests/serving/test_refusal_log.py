"""Refusal log lines are bounded per reason: a client flooding refused streams cannot flood the log."""
from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from fusion_decoder.loglimit import LogLimiter
from ndsc.bundle import load_bundle
from tests.reliability.conftest import header
from tests.serving.conftest import raw_uplink, running_decoder


def test_limiter_writes_a_burst_per_reason_per_interval_then_states_what_it_suppressed():
    limiter = LogLimiter(burst=2, interval=10.0)
    assert [limiter.allow("crc_mismatch", t) for t in (0.0, 1.0, 2.0, 3.0)] == [
        (True, 0), (True, 0), (False, 0), (False, 0)]
    assert limiter.allow("bundle_mismatch", 3.0) == (True, 0)  # reasons have their own budgets
    assert limiter.allow("crc_mismatch", 10.0) == (True, 2)  # a new interval: the line says 2 were skipped
    assert limiter.allow("crc_mismatch", 11.0) == (True, 0)
    assert limiter.allow("crc_mismatch", 12.0) == (False, 0)


def test_limiter_refuses_a_budget_that_writes_nothing():
    with pytest.raises(ValueError):
        LogLimiter(burst=0)
    with pytest.raises(ValueError):
        LogLimiter(interval=0)


def test_a_flood_of_refused_streams_writes_a_bounded_log_and_counts_the_rest(gaussian_bundle, caplog):
    bundle = load_bundle(gaussian_bundle)
    flood = 40
    wrong = [header(bundle, bundle_id="sha256:" + "0" * 64)]

    async def scenario():
        async with running_decoder(gaussian_bundle, refusal_log=(3, 3600.0)) as (server, address, registry):
            async with grpc.aio.insecure_channel(address) as channel:
                results = [await raw_uplink(address, wrong, channel=channel) for _ in range(flood)]
                other = await raw_uplink(address, [header(bundle, source=7, group="g-src")], channel=channel)
        return results, other, registry

    with caplog.at_level(logging.WARNING, logger="ndsc.decoder"):
        results, other, registry = asyncio.run(scenario())
    assert all(code == grpc.StatusCode.FAILED_PRECONDITION for _, code, _ in results)  # every one still refused
    assert other[1] == grpc.StatusCode.INVALID_ARGUMENT
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused Uplink")]
    assert sum("differs from the decoder's" in line for line in lines) == 3  # the burst, then silence
    assert sum("out of range" in line for line in lines) == 1  # another reason keeps its own budget
    assert registry.get_sample_value("ndsc_streams_rejected_total", {"reason": "bundle_mismatch"}) == flood
    assert registry.get_sample_value("ndsc_log_lines_suppressed_total", {"reason": "bundle_mismatch"}) == flood - 3
    assert registry.get_sample_value("ndsc_log_lines_suppressed_total", {"reason": "unknown_source"}) is None
