"""The UI test's world: Debian's Chromium driven by Playwright, and a real `dagster dev` serving a
Dagster home in which a tiny model has already been trained and passed the gate.

The prerequisites (imagery and labels of two tiny regions, a one-epoch model) are materialised in
this process before the server starts, so the browser only does what a user would do next.
Screenshots land in test-artifacts/ui/ (git-ignored); each path is printed as it is written.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dagster as dg
import pytest

from devtools import chromium
from devtools.dagster_dev import ROOT, dagster_dev, graphql
from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.cli import register
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.gate import ModelGate
from resources.imagery import ImageryResource
from resources.storage import ManifestIOManager, StorageResource

ARTIFACTS = ROOT / "test-artifacts" / "ui"
MODEL = "ui-model"
DATE = "2024-06-01"
# 2 x 2 tiles of 64 px at 10 m, apart from each other (held-out ground may not touch the training ground).
TRAIN = Region("ui-train", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
HOLDOUT = Region("ui-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
# The region the browser materialises: in no training or evaluation set, so its imagery triggers nothing else.
FIELD = Region("ui-field", (480000.0, 5120000.0, 481280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
TILES = {"config": {"tile_size": 64}}
# Plumbing, not quality: the gate is set to 0 for this deployment, so one short epoch serves.
TRAINING = {"architecture": "fcn", "epochs": 1, "chips_per_epoch": 16, "chip_size": 64, "batch_size": 8,
            "hyperparameters": {"hidden_channels": 8}}


def _prepare(home: Path, root: str) -> str:
    """Catalogue the tiny regions, register partitions, cut imagery and labels, train and gate MODEL;
    returns the model version."""
    store = Store(root)
    catalogue = load_catalogue(store)
    for region in (TRAIN, HOLDOUT, FIELD):
        catalogue.add(region)
    save_catalogue(store, catalogue)
    storage = StorageResource(root=root)
    resources = {
        "storage": storage, "compute": LocalPoolCompute(workers=2), "io_manager": ManifestIOManager(storage=storage),
        "imagery": ImageryResource(), "gate": ModelGate(min_miou=0.0),
    }
    # The instance yaml reads DAGSTER_HOME from the environment.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.from_config(str(home))
        register(instance, regions=catalogue.names(), models=[MODEL])

        def run(assets, key, ops):
            result = dg.materialize(assets, partition_key=key, resources=resources, instance=instance,
                                    run_config={"ops": ops})
            assert result.success, key
            return result

        for region in (TRAIN, HOLDOUT):
            run([imagery_tiles], region_date_key(region.name, DATE), {"imagery_tiles": TILES})
            run([labels], region.name, {"labels": TILES})
        trained = run([training_set, evaluation_set, trained_model, model_evaluation], MODEL, {
            "training_set": {"config": {"regions": [TRAIN.name], "dates": [DATE]}},
            "evaluation_set": {"config": {"regions": [HOLDOUT.name], "dates": [DATE]}},
            "trained_model": {"config": TRAINING},
        })
        instance.dispose()
    return trained.output_for_node("trained_model")["version"]


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
    version = _prepare(home, root)
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
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Chromium's sandbox refuses to run as root, as CI and this machine do.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = pw.chromium.launch(executable_path=str(chromium_executable), headless=True, args=args)
        yield browser
        browser.close()


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


def pytest_terminal_summary(terminalreporter):
    if SHOTS:
        terminalreporter.section("UI screenshots")
        for path in SHOTS:
            terminalreporter.write_line(str(path))
