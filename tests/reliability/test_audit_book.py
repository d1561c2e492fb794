"""The audit book (raw audited windows waiting for their reconstructions, and back) is bounded per group
and in bytes, and what one group sends never evicts another group's entries."""
from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from fusion_decoder.audit import AuditBook
from fusion_decoder.metrics import DecoderMetrics


def _book(**kwargs) -> tuple[AuditBook, CollectorRegistry]:
    registry = CollectorRegistry()
    return AuditBook(DecoderMetrics(registry), **kwargs), registry


def _audited(registry: CollectorRegistry, group: str) -> float:
    return registry.get_sample_value("ndsc_audit_windows_total", {"group": group, "source": "0"}) or 0


def _unmatched(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("ndsc_audit_rejected_total", {"reason": "unmatched"}) or 0


def test_a_group_flooding_audits_evicts_its_own_never_another_groups():
    book, registry = _book(keep=8, max_bytes=1 << 20)
    raw = np.ones(64, np.float32)  # one source's window
    assert book.add_raw("good", 5, 0, raw) is False  # its reconstruction comes later
    for window in range(1000):  # audits of windows that will never be decoded, some large
        book.add_raw("flood", window, 0, np.ones(4096 if window % 2 else 64, np.float32))
    assert book.held_bytes <= 1 << 20
    book.add_reconstruction("good", 5, raw[None] * 0.5)  # (sources, samples)
    assert _audited(registry, "good") == 1  # matched: the flood did not push it out
    assert _unmatched(registry) == 1000 - 8  # the flood's own audits went, each counted


def test_reconstructions_held_for_audits_are_copied_and_bounded_in_bytes():
    book, _ = _book(keep=128, max_bytes=8 << 20)
    batch = np.zeros((4, 2, 3, 250, 370), np.float32)  # four stereo windows, 2.2 MB each
    for window in range(200):
        book.add_reconstruction("stereo", window, batch[window % 4])
        assert book.held_bytes <= 8 << 20  # not 128 windows × 2.2 MB
    held = book._recent["stereo"]
    assert 0 < len(held) < 128
    assert not any(np.shares_memory(x_hat, batch) for x_hat, _ in held.values())  # no decode batch kept alive


def test_the_biggest_group_gives_up_bytes_first():
    book, registry = _book(keep=128, max_bytes=1 << 20)
    small = np.ones((1, 256), np.float32)  # 1 KiB
    book.add_reconstruction("small", 1, small)
    for window in range(64):  # 64 × 64 KiB: four times the budget
        book.add_reconstruction("big", window, np.ones((1, 16384), np.float32))
    assert book.add_raw("small", 1, 0, small[0]) is True  # still held
    assert _audited(registry, "small") == 1


def test_audits_of_groups_without_a_stream_share_a_few_places():
    streaming = {"live"}
    book, registry = _book(keep=128, known=streaming.__contains__, stranger_keep=4)
    raw = np.ones(8, np.float32)
    for k in range(10):
        book.add_raw(f"nobody{k}", 1, 0, raw)
    assert _unmatched(registry) == 6  # the first 4 wait (an audit may overtake its group's first frame)
    assert book.add_raw("live", 1, 0, raw) is False  # a streaming group's audit still waits
    book.add_reconstruction("live", 1, raw[None])
    assert _audited(registry, "live") == 1
    book.forget("nobody0")
    book.add_raw("nobody10", 1, 0, raw)
    assert _unmatched(registry) == 6  # the forgotten group's place was given back
