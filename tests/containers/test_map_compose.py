"""The compose stack's map service (deploy/compose/docker-compose.yml) reads the store with keys that cannot
write it: started from the compose file as `up -d` starts it, against a real S3 server (SeaweedFS) whose
identity for the map's keys may only Read and List, it serves a tiny world's map, while a PUT and a
DELETE made with its own credentials, from inside its container, are refused by the server (and the
object is still there). Without its keys it does not start, and names them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import morecantile
import pytest
import requests
from tiny_world import DATE, TILES64, TINY, resources_for

from devtools.emulators import free_port
from devtools.emulators.s3 import seaweedfs
from geo_assets.cli.commands import register
from geo_assets.geo.regions import load_catalogue, save_catalogue
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.storage import StorageResource

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = "deploy/compose/docker-compose.yml"
BUCKET, PREFIX = "geo-assets-map-keys", "world"
STACK_KEY, STACK_SECRET = "geo-assets-map-keys-stack", "stack-" + secrets.token_hex(8)  # may write
MAP_KEY, MAP_SECRET = "geo-assets-map-keys-map", "map-" + secrets.token_hex(8)  # may only read and list

# Run in the map's container, with its environment (its keys): what the S3 server answers to each.
TRY = """
import json, os, boto3, botocore.exceptions
s3, bucket, key = boto3.client("s3"), os.environ["BUCKET"], os.environ["KEY"]
def answer(call, **kw):
    try:
        call(Bucket=bucket, **kw)
        return "done"
    except botocore.exceptions.ClientError as exc:
        return exc.response["Error"]["Code"]
print(json.dumps({
    "key": os.environ["AWS_ACCESS_KEY_ID"],
    "get": answer(s3.get_object, Key=key),
    "list": answer(s3.list_objects_v2, Prefix="world/"),
    "put": answer(s3.put_object, Key="world/written-by-the-map", Body=b"x"),
    "delete": answer(s3.delete_object, Key=key),
}))
"""


@pytest.fixture(scope="module")
def image(request) -> str:
    """GEO_ASSETS_IMAGE when set (an image built from a worktree), else geo-assets:cpu from this checkout."""
    request.getfixturevalue("engine")
    return os.environ.get("GEO_ASSETS_IMAGE") or request.getfixturevalue("app_image")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("map-keys-s3")
    with seaweedfs(workdir, [BUCKET], STACK_KEY, STACK_SECRET, readers={MAP_KEY: MAP_SECRET}) as server:
        yield server


@pytest.fixture(scope="module")
def world(s3) -> str:
    """tiny-field's imagery materialised into the bucket with the stack's keys; the key of one tile."""
    from geo_assets.assets.imagery import imagery_tiles

    storage = StorageResource(
        root=f"s3://{BUCKET}/{PREFIX}",
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        access_key_id=STACK_KEY,
        secret_access_key=STACK_SECRET,
    )
    store = storage.store()
    catalogue = load_catalogue(store)
    catalogue.add(TINY)
    save_catalogue(store, catalogue)
    with dg.instance_for_test() as instance:
        register(instance, regions=[TINY.name])
        result = dg.materialize(
            [imagery_tiles],
            partition_key=region_date_key(TINY.name, DATE),
            resources=resources_for(storage, LocalPoolCompute(workers=2)),
            instance=instance,
            run_config={"ops": {"imagery_tiles": TILES64}},
        )
    assert result.success
    return next(k for k in store.list("imagery") if k.endswith(".tif"))


def compose_env(s3, image: str, port: int, **map_keys: str) -> dict[str, str]:
    """The README's variables with this test's values (the stack's keys write), and the map's own."""
    return {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "COMPOSE_PROJECT_NAME": f"geo-assets-map-keys-{uuid.uuid4().hex[:8]}",
        "GEO_ASSETS_IMAGE": image,
        "GEO_ASSETS_STORAGE_ROOT": f"s3://{BUCKET}/{PREFIX}",
        "GEO_ASSETS_LOG_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": STACK_KEY,
        "AWS_SECRET_ACCESS_KEY": STACK_SECRET,
        "AWS_REGION": s3.region,
        "DAGSTER_PG_PASSWORD": "unused-" + secrets.token_hex(4),
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "GEO_ASSETS_MAP_PORT": str(port),
        **map_keys,
    }


def compose(env: dict[str, str], *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["docker-compose", "-f", COMPOSE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert not check or proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


@pytest.fixture
def map_service(s3, image, request):
    """Starts the compose file's map service alone (`up -d --no-deps map`) with the given map keys; its
    project is taken down (containers removed) at the end."""
    started = []

    def start(**map_keys: str) -> tuple[dict[str, str], str]:
        port = free_port()
        env = compose_env(s3, image, port, **map_keys)
        started.append(env)
        compose(env, "up", "-d", "--no-deps", "map")
        return env, f"http://127.0.0.1:{port}"

    yield start
    for env in started:
        compose(env, "down", "-v", "--remove-orphans", check=False)


def wait_serving(url: str, env: dict[str, str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the map service did not answer: {compose(env, 'logs', 'map', check=False).stdout[-3000:]}")


def test_the_map_reads_the_store_and_its_keys_cannot_write_it(map_service, s3, world):
    env, url = map_service(MAP_AWS_ACCESS_KEY_ID=MAP_KEY, MAP_AWS_SECRET_ACCESS_KEY=MAP_SECRET)
    wait_serving(url, env)
    # It reads: the acquisition's view (listings, manifests, the catalogue) and a tile (GDAL reads a COG).
    view = requests.get(f"{url}/api/view", params={"region": TINY.name, "date": DATE}, timeout=60)
    assert view.status_code == 200, view.text
    assert len(view.json()["grid"]["features"]) == 4
    ring = view.json()["footprint"]["coordinates"][0]
    lon, lat = sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring)
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 15)
    png = requests.get(f"{url}/tiles/imagery/{TINY.name}/{DATE}/true-colour/15/{tile.x}/{tile.y}.png", timeout=60)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG"), png.text[:300]

    # Its own credentials, in its own container: the S3 server refuses their writes and deletes.
    tried = compose(
        env, "exec", "-T", "-e", f"BUCKET={BUCKET}", "-e", f"KEY={PREFIX}/{world}", "map", "python", "-c", TRY
    )
    answers = json.loads(tried.stdout.strip().splitlines()[-1])
    assert answers == {"key": MAP_KEY, "get": "done", "list": "done", "put": "AccessDenied", "delete": "AccessDenied"}
    store = StorageResource(
        root=f"s3://{BUCKET}/{PREFIX}",
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        access_key_id=STACK_KEY,
        secret_access_key=STACK_SECRET,
    ).store()
    assert store.exists(world) and not store.exists("written-by-the-map")


def test_without_its_keys_the_map_does_not_start_and_names_them(map_service, world):
    env, _ = map_service()  # the stack's keys are set, the map's are not: it must not fall back on them
    (container,) = compose(env, "ps", "-q", "map").stdout.split()
    waited = subprocess.run(["docker", "wait", container], capture_output=True, text=True, timeout=120)
    assert waited.stdout.strip() == "2", waited
    logs = compose(env, "logs", "--no-color", "map").stdout
    assert "map: set MAP_AWS_ACCESS_KEY_ID and MAP_AWS_SECRET_ACCESS_KEY to a key that may only read" in logs, logs
