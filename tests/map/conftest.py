"""Fixtures of the map tests: a store holding tiny-field's imagery and predictions on two dates
(map_world.py), the same objects on a real S3 server (SeaweedFS) and a GCS server (fake-gcs-server),
and a real map server (`python -m geo_assets.map`, as `make dev` and the image start it) over each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import pytest
from map_world import ROOT, copy_store, map_server, prepare

from devtools import leaflet
from devtools.emulators.gcs import fake_gcs
from devtools.emulators.s3 import seaweedfs
from geo_assets.geo.store import Store, local_root, make_store

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
def world(tmp_path_factory) -> tuple[Store, str]:
    store = Store(local_root(tmp_path_factory.mktemp("map-world") / "storage"))
    return store, prepare(store)


@pytest.fixture(scope="session")
def local_map(world, tmp_path_factory) -> Iterator[MapServer]:
    store, version = world
    env = {**os.environ, "GEO_ASSETS_PROFILE": "local", "GEO_ASSETS_STORAGE_ROOT": store.root, "PYTHONPATH": str(ROOT)}
    with map_server(env, tmp_path_factory.mktemp("map-log") / "map.log") as url:
        yield MapServer(url, store, version)


@pytest.fixture(scope="session")
def s3_map(world, tmp_path_factory) -> Iterator[MapServer]:
    """The same world in a bucket's prefix, served on the aws profile; another bucket beside it."""
    local, version = world
    key, secret = "geo-assets-map-key", "geo-assets-map-secret"
    with seaweedfs(tmp_path_factory.mktemp("map-s3"), [BUCKET, OTHER_BUCKET], key, secret) as server:
        settings = dict(endpoint_url=server.endpoint_url, region="us-east-1", access_key_id=key, secret_access_key=secret)
        store = make_store(f"s3://{BUCKET}/world", **settings)
        copy_store(local, store)
        make_store(f"s3://{OTHER_BUCKET}", **settings).write_bytes("secret.tif", local.read_bytes(
            local.list("predictions")[0]))
        env = {**os.environ, "GEO_ASSETS_PROFILE": "aws", "GEO_ASSETS_STORAGE_ROOT": store.root,
               "AWS_ENDPOINT_URL_S3": server.endpoint_url, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": key,
               "AWS_SECRET_ACCESS_KEY": secret, "PYTHONPATH": str(ROOT)}
        with map_server(env, tmp_path_factory.mktemp("map-s3-log") / "map.log") as url:
            yield MapServer(url, store, version)


@pytest.fixture(scope="session")
def gcs_map(world, tmp_path_factory) -> Iterator[MapServer]:
    """The same world in a GCS bucket's prefix, served on the gcp profile."""
    local, version = world
    with fake_gcs(tmp_path_factory.mktemp("map-gcs"), [BUCKET, OTHER_BUCKET]) as endpoint:
        store = make_store(f"gs://{BUCKET}/world", endpoint_url=endpoint, anonymous=True, project="test-project")
        copy_store(local, store)
        env = {**os.environ, "GEO_ASSETS_PROFILE": "gcp", "GEO_ASSETS_STORAGE_ROOT": store.root,
               "STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_CLOUD_PROJECT": "test-project",
               "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "PYTHONPATH": str(ROOT)}
        with map_server(env, tmp_path_factory.mktemp("map-gcs-log") / "map.log") as url:
            yield MapServer(url, store, version)
