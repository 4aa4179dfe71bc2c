"""Fixtures of the map tests: a store and a Dagster home holding tiny-field's imagery and predictions
on two dates (map_world.py), the same objects on a real S3 server (SeaweedFS) and a GCS server
(fake-gcs-server), a real map server (`python -m geo_assets.map`, as `make dev` and the image start
it) over each, and Debian's Chromium for the browser tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from map_world import ROOT, copy_store, map_server, prepare

from devtools import chromium, leaflet
from devtools.emulators import free_port
from devtools.emulators.gcs import fake_gcs
from devtools.emulators.s3 import seaweedfs
from geo_assets.geo.store import Store, local_root, make_store
from geo_assets.map.links import MAP_URL_ENV

BUCKET = "geo-assets-map"
OTHER_BUCKET = "geo-assets-other"  # holds an object the map must never serve


@dataclass(frozen=True)
class MapServer:
    url: str
    store: Store
    version: str  # the model version predicted


@pytest.fixture(scope="session", autouse=True)
def leaflet_page():
    """The map page's Leaflet, as `make map-page` fetches it (npm, integrity-checked): a fresh clone has none,
    and /map answers 503 without it."""
    leaflet.install()


@pytest.fixture(scope="session")
def local_port() -> int:
    """The local map server's port, chosen before the world is made: the world's materialisations link
    there (GEO_ASSETS_MAP_URL), as a deployment's link to its map."""
    return free_port()


@pytest.fixture(scope="session")
def dagster_home(tmp_path_factory) -> Path:
    """The Dagster home the world is materialised in (the project's dagster.yaml), which the UI test serves."""
    home = tmp_path_factory.mktemp("map-home")
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    return home


@pytest.fixture(scope="session")
def world(tmp_path_factory, dagster_home, local_port) -> tuple[Store, str]:
    store = Store(local_root(tmp_path_factory.mktemp("map-world") / "storage"))
    with pytest.MonkeyPatch.context() as env:  # the instance yaml reads DAGSTER_HOME; the links, the map's address
        env.setenv("DAGSTER_HOME", str(dagster_home))
        env.setenv(MAP_URL_ENV, f"http://127.0.0.1:{local_port}")
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        try:
            version = prepare(store, instance)
        finally:
            instance.dispose()
    return store, version


@pytest.fixture(scope="session")
def local_map(world, local_port, tmp_path_factory) -> Iterator[MapServer]:
    store, version = world
    env = {
        **os.environ,
        "GEO_ASSETS_PROFILE": "local",
        "GEO_ASSETS_STORAGE_ROOT": store.root,
        "PYTHONPATH": str(ROOT),
        MAP_URL_ENV: f"http://127.0.0.1:{local_port}",
    }  # its own public address (TileJSON's tile URLs)
    with map_server(env, tmp_path_factory.mktemp("map-log") / "map.log", port=local_port) as url:
        yield MapServer(url, store, version)


@pytest.fixture(scope="session")
def s3_map(world, tmp_path_factory) -> Iterator[MapServer]:
    """The same world in a bucket's prefix, served on the aws profile; another bucket beside it."""
    local, version = world
    key, secret = "geo-assets-map-key", "geo-assets-map-secret"
    with seaweedfs(tmp_path_factory.mktemp("map-s3"), [BUCKET, OTHER_BUCKET], key, secret) as server:
        settings = dict(
            endpoint_url=server.endpoint_url, region="us-east-1", access_key_id=key, secret_access_key=secret
        )
        store = make_store(f"s3://{BUCKET}/world", **settings)
        copy_store(local, store)
        make_store(f"s3://{OTHER_BUCKET}", **settings).write_bytes(
            "secret.tif", local.read_bytes(local.list("predictions")[0])
        )
        env = {
            **os.environ,
            "GEO_ASSETS_PROFILE": "aws",
            "GEO_ASSETS_STORAGE_ROOT": store.root,
            "AWS_ENDPOINT_URL_S3": server.endpoint_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "PYTHONPATH": str(ROOT),
        }
        with map_server(env, tmp_path_factory.mktemp("map-s3-log") / "map.log") as url:
            yield MapServer(url, store, version)


@pytest.fixture(scope="session")
def gcs_map(world, tmp_path_factory) -> Iterator[MapServer]:
    """The same world in a GCS bucket's prefix, served on the gcp profile."""
    local, version = world
    with fake_gcs(tmp_path_factory.mktemp("map-gcs"), [BUCKET, OTHER_BUCKET]) as endpoint:
        store = make_store(f"gs://{BUCKET}/world", endpoint_url=endpoint, anonymous=True, project="test-project")
        copy_store(local, store)
        env = {
            **os.environ,
            "GEO_ASSETS_PROFILE": "gcp",
            "GEO_ASSETS_STORAGE_ROOT": store.root,
            "STORAGE_EMULATOR_HOST": endpoint,
            "GOOGLE_CLOUD_PROJECT": "test-project",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "PYTHONPATH": str(ROOT),
        }
        with map_server(env, tmp_path_factory.mktemp("map-gcs-log") / "map.log") as url:
            yield MapServer(url, store, version)


@pytest.fixture(scope="module")
def browser(local_map):
    """Debian's Chromium, headless, driven by Playwright; started after the world's in-process
    materialisations (Playwright's sync API runs an event loop in this thread)."""
    with chromium.headless(chromium.install()) as browser:
        yield browser


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()
