"""Real stores for the trigger tests: a local folder, SeaweedFS (S3 API, signatures checked) and
fake-gcs-server (GCS API), each started once per session on 127.0.0.1; every test gets a fresh
prefix of the shared bucket, so tests never see each other's objects."""

import uuid

import pytest

from devtools.emulators.gcs import fake_gcs
from devtools.emulators.s3 import seaweedfs
from geo_assets.geo.store import Store, local_root, make_store
from trigger_stores import ACCESS_KEY, BUCKET, SECRET, gcs_settings, s3_settings  # tests/triggers is on sys.path


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
