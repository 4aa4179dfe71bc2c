"""Container tests: Debian's Docker engine, base images made from Debian's packages and the
project's image (devtools/containers.py makes all three, idempotently). Every test here carries the
`containers` marker: `make test` runs them after the rest of the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import containers

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.containers)
            if item.get_closest_marker("timeout") is None:
                # The first test of a worker also makes the base images and the project's image
                # (bootstrap, then every locked wheel): minutes on a cold, loaded machine.
                item.add_marker(pytest.mark.timeout(2400))


@pytest.fixture(scope="session")
def engine() -> None:
    containers.ensure_engine()


@pytest.fixture(scope="session")
def app_image(engine) -> str:
    """geo-assets:cpu, built from this checkout (seconds when only code changed)."""
    return containers.app_image()
