"""Real stores for the trigger tests: a local folder, SeaweedFS (S3 API, signatures checked) and
fake-gcs-server (GCS API), each started once per session on 127.0.0.1; every test gets a fresh
prefix of the shared bucket, so tests never see each other's objects.

And a small world for the launch, backfill, schedule and limit tests: two tiny regions, their imagery
and labels, a tiny model trained as `landcover-unet` (the default model) in a real store and Dagster
home, and a real `dagster dev` (webserver and daemon) serving them.
"""

import contextlib
import io
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from trigger_stores import ACCESS_KEY, BUCKET, SECRET, gcs_settings, s3_settings  # tests/triggers is on sys.path

from devtools import docs
from devtools.dagster_dev import BIN, ROOT, dagster_dev, free_port
from devtools.emulators.gcs import fake_gcs
from devtools.emulators.s3 import seaweedfs
from geo_assets import cli
from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import evaluation_set, model_evaluation, trained_model, training_set
from geo_assets.cli.commands import register
from geo_assets.geo.regions import Region, load_catalogue, save_catalogue
from geo_assets.geo.store import Store, local_root, make_store
from geo_assets.partitions import region_date_key
from resources.compute import LocalPoolCompute
from resources.storage import StorageResource
from tests.tiny_world import TILES64, TRAIN, resources_for  # the tiny world's settings and resources


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), [BUCKET], ACCESS_KEY, SECRET) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    with fake_gcs(tmp_path_factory.mktemp("fake-gcs"), [BUCKET]) as endpoint_url:
        yield endpoint_url


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", "s3", "gcs"])
def any_store(request, tmp_path, prefix) -> Store:
    """The same test on a local folder, the S3 API and the GCS API."""
    if request.param == "local":
        return Store(local_root(tmp_path / "storage"))
    if request.param == "s3":
        return make_store(f"s3://{BUCKET}/{prefix}", **s3_settings(request.getfixturevalue("s3_server")))
    return make_store(f"gs://{BUCKET}/{prefix}", **gcs_settings(request.getfixturevalue("gcs_server")))


MODEL = "landcover-unet"
FIELD = Region("tiny-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")
HOLDOUT = Region("tiny-holdout", (440320.0, 5120000.0, 441600.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic")


@dataclass
class World:
    tmp: Path
    env: dict  # for subprocesses: the Dagster home, the storage root, a gate every tiny model passes
    store: Store
    resources: dict
    version: str  # the trained landcover-unet version

    def cli(self, *args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        """`geo-assets ARGS` in a fresh process."""
        return subprocess.run(
            [str(BIN / "geo-assets"), *map(str, args)],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def main(self, *args, env: dict | None = None) -> subprocess.CompletedProcess:
        """The same command in this process (the same code path without a process start-up, for the many
        refusal cases)."""
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            for name, value in {**self.env, **(env or {})}.items():
                patch.setenv(name, value)
            code = cli.main([str(a) for a in args])
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _materialize(assets, key, world_resources, instance, ops):
    result = dg.materialize(
        assets,
        partition_key=key,
        resources=world_resources,
        instance=instance,
        run_config={"ops": ops},
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("triggers")
    home = tmp / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri(),
        "GEO_ASSETS_MIN_MIOU": "0",
        # An imagery source whose STAC API is down: its runs fail in the step (connection refused).
        "GEO_ASSETS_EARTH_SEARCH_URL": f"http://127.0.0.1:{free_port()}/",
    }
    store = Store(local_root(tmp / "storage"))
    catalogue = load_catalogue(store)
    for region in (FIELD, HOLDOUT):
        catalogue.add(region)
    save_catalogue(store, catalogue)
    with pytest.MonkeyPatch.context() as env_of_home:  # the instance yaml reads DAGSTER_HOME
        env_of_home.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.from_config(str(home)) as served:  # the instance `dagster dev` serves
            register(served, regions=catalogue.names(), models=[MODEL])

    storage = StorageResource(root=store.root)
    resources = resources_for(storage, LocalPoolCompute(workers=2))
    with dg.instance_for_test() as instance:  # the training history is not needed, only the stored version
        register(instance, regions=load_catalogue(store).names(), models=[MODEL])
        for region in (FIELD, HOLDOUT):
            _materialize(
                [imagery_tiles],
                region_date_key(region.name, "2024-06-01"),
                resources,
                instance,
                {"imagery_tiles": TILES64},
            )
            _materialize([labels], region.name, resources, instance, {"labels": TILES64})
        ops = {
            "training_set": {"config": {"regions": [FIELD.name]}},
            "evaluation_set": {"config": {"regions": [HOLDOUT.name]}},
            "trained_model": {"config": TRAIN},
        }
        result = _materialize(
            [training_set, evaluation_set, trained_model, model_evaluation], MODEL, resources, instance, ops
        )
    return World(tmp, env, store, resources, result.output_for_node("trained_model")["version"])


@pytest.fixture(scope="session")
def server(world) -> str:
    """The GraphQL URL of `dagster dev` serving the world."""
    with dagster_dev(world.env, world.tmp / "dev.log") as url:
        yield url


@pytest.fixture
def readme_curl():
    """post(section, replace): POST the JSON body of the `curl` example in a docs section, with `replace`
    applied (tiny inputs), with the real curl; returns the JSON answer."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the docs' curl examples cannot be run")

    def post(url: str, section: str, replace: dict[str, str]) -> dict:
        text = docs.section(section)
        body = text.split("-d @- <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
        for old, new in replace.items():
            body = body.replace(old, new)
        proc = subprocess.run(
            ["curl", "-s", url, "-H", "Content-Type: application/json", "-d", "@-"],
            input=body,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(proc.stdout)

    return post
