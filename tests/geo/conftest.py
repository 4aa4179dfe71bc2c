"""Shared fixtures for the geo unit tests: real files under tmp_path, no mocks."""

from __future__ import annotations

import pytest

from geo_assets.geo.regions import Region, builtin_regions
from geo_assets.geo.store import Store, local_root


@pytest.fixture
def store(tmp_path) -> Store:
    """An empty Store rooted in this test's tmp_path."""
    return Store(local_root(tmp_path / "store"))


@pytest.fixture(scope="session")
def regions() -> dict[str, Region]:
    return builtin_regions()
