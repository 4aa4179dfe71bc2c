"""Fixtures of the UI test: Debian's Chromium driven by Playwright, and a real `dagster dev` serving
a Dagster home in which a tiny model has already been trained and passed the gate (ui_world.py).
Screenshots land in test-artifacts/ui/ (git-ignored) and are listed at the end of the session (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ui_world import prepare

from devtools import chromium
from devtools.dagster_dev import ROOT, dagster_dev, graphql
from geo_assets.geo.store import Store, local_root

ARTIFACTS = ROOT / "test-artifacts" / "ui"


@dataclass(frozen=True)
class Server:
    base: str  # the UI
    graphql: str
    store: Store  # the storage root its runs write to
    model_version: str  # MODEL's serving version


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """`dagster dev` on a home where MODEL is trained and serving."""
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    root = local_root(tmp / "storage")
    version = prepare(home, root)
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": root, "GEO_ASSETS_MIN_MIOU": "0"}
    with dagster_dev(env, tmp / "dev.log") as graphql_url:
        # The welcome dialog of a first visit would cover the page: dismiss it as its "Skip" does.
        graphql(graphql_url, "mutation { setNuxSeen }")
        yield Server(graphql_url.removesuffix("/graphql"), graphql_url, Store(root), version)


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's Chromium, installed with apt-get when missing (CI's fresh machine)."""
    return chromium.install()


@pytest.fixture(scope="module")
def browser(chromium_executable, server):
    """Chromium, headless, driven by Playwright. Started after the server's prerequisites: Playwright's
    sync API runs an event loop in this thread, which the in-process materialisations must not share."""
    with chromium.headless(chromium_executable) as browser:
        yield browser


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)  # generous for a busy machine, still bounded
    page = context.new_page()
    yield page
    context.close()


SHOTS: list[Path] = []


@pytest.fixture
def shoot(request, page):
    """shoot(name): a screenshot of the page in test-artifacts/ui/ (emptied first), listed at the end of
    the session; a failing test leaves one more of the page as it failed."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)

    def take(name: str) -> Path:
        path = ARTIFACTS / f"{len(SHOTS) + 1:02d}-{name}.png"
        page.screenshot(path=path, full_page=True, animations="disabled")  # dialogs fully faded in
        SHOTS.append(path)
        print(f"screenshot: {path}")
        return path

    yield take
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        take("failed")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report  # read by `shoot` to keep the failing page
    return report
