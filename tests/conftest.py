"""Test-session environment: a private Dagster home and storage root, set before any import of
the code location (its resources read them when the Definitions load)."""

import os
import shutil
import tempfile

_HOME = tempfile.mkdtemp(prefix="geo-assets-test-home-")


def pytest_configure(config):
    os.environ["DAGSTER_HOME"] = _HOME
    os.environ["GEO_ASSETS_STORAGE_ROOT"] = "file://" + os.path.join(_HOME, "storage")
    os.environ["GEO_ASSETS_CACHE_DIR"] = os.path.join(_HOME, "cache")  # measured inference layouts
    os.environ.pop("GEO_ASSETS_PROFILE", None)


def pytest_unconfigure(config):
    shutil.rmtree(_HOME, ignore_errors=True)
