"""Test-session environment: a private Dagster home and storage root, set when this file is imported:
before any import of the code location (its resources read them when the Definitions load), which
the conftest files of test folders named on the command line may import before pytest_configure
runs. Each process has its own: a pytest-xdist worker imports this file again."""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

_HOME = tempfile.mkdtemp(prefix="geo-assets-test-home-")
_STARTED = time.time()
UI_SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui"  # written by tests/ui
os.environ["DAGSTER_HOME"] = _HOME
os.environ["GEO_ASSETS_STORAGE_ROOT"] = "file://" + os.path.join(_HOME, "storage")
os.environ["GEO_ASSETS_CACHE_DIR"] = os.path.join(_HOME, "cache")  # measured inference layouts
os.environ.pop("GEO_ASSETS_PROFILE", None)


def _pin_xdist_worker() -> None:
    """Give each pytest-xdist worker its own share of the cores (its subprocesses inherit it): torch,
    ONNX Runtime and Dask size their threads from the cores a process may use, and two workers each
    spinning threads on every core slow the heavy tests several times over."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= count:
        os.sched_setaffinity(0, cpus[int(worker.removeprefix("gw")) % count :: count])


def pytest_configure(config):
    _pin_xdist_worker()


def pytest_unconfigure(config):
    shutil.rmtree(_HOME, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    # Here, not in tests/ui: with pytest-xdist the summary is the controller's, which loads only this conftest.
    shots = sorted(p for p in UI_SHOTS.glob("*.png") if p.stat().st_mtime >= _STARTED) if UI_SHOTS.is_dir() else []
    if shots:
        terminalreporter.section("UI screenshots")
        for path in shots:
            terminalreporter.write_line(str(path))


@pytest.fixture(autouse=True)
def _no_stale_defs_state_storage():
    """Entering a DagsterInstance sets Dagster's current definitions-state storage (a context
    variable, dagster 1.13.27), which holds the instance by weak reference. Where one test file left
    it set and its instance was then collected, a later file's `dg.materialize` in the same worker
    failed with "Attempted to resolve undefined DagsterInstance weakref" (tests/ui, once). Each test
    starts and ends with none set, as a fresh process does; the project keeps no definitions state."""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    yield
    _current_storage.set(None)
