"""Fixtures of the map tests: a store holding tiny-field's imagery and predictions on two dates
(map_world.py), the same objects on a real S3 server (SeaweedFS), and a real map server
(`python -m geo_assets.map`, as `make dev` and the image start it) over either."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests
from map_world import copy_store, prepare

from devtools.emulators import free_port
from devtools.emulators.s3 import seaweedfs
from geo_assets.geo.store import Store, local_root, make_store

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "geo-assets-map"
OTHER_BUCKET = "geo-assets-other"  # holds an object the map must never serve


@dataclass(frozen=True)
class MapServer:
    url: str
    store: Store
    version: str  # the model version predicted


@contextmanager
def map_server(env: dict, log: Path, timeout: float = 60) -> Iterator[str]:
    """`python -m geo_assets.map` on a free port in `env`; yields its base URL; stopped by its pid."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "geo_assets.map", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the map server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
