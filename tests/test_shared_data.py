"""Tests on the shared data folder skip on a fresh clone and fail in CI (NDSC_REQUIRE_SHARED_DATA=1)."""
from __future__ import annotations

import pytest

from tests.conftest import REQUIRE_SHARED_DATA, shared_data


def test_missing_shared_data_skips_with_the_path_and_why(monkeypatch):
    monkeypatch.delenv(REQUIRE_SHARED_DATA, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"needs the shared data folder .*shared/data/no-such-set"):
        shared_data("data/no-such-set")


def test_missing_shared_data_fails_when_ci_demands_it(monkeypatch):
    monkeypatch.setenv(REQUIRE_SHARED_DATA, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_SHARED_DATA}=1 demands it"):
        shared_data("data/no-such-set")


def test_ci_demands_the_shared_data():
    from tests.conftest import REPO

    assert f"export {REQUIRE_SHARED_DATA}=1" in (REPO / ".ci" / "run").read_text()
