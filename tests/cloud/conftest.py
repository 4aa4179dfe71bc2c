"""Real servers for the cloud tests: SeaweedFS (S3 API), fake-gcs-server (GCS API) and PostgreSQL
(the storage of the cloud profiles' instance yamls).

Each server starts once per session on 127.0.0.1 with free ports and stops at the end; every test
gets stores on a fresh prefix of the shared bucket, so tests never see each other's objects.
"""

import secrets
import uuid

import pytest

from devtools.emulators.gcs import fake_gcs
from devtools.emulators.s3 import seaweedfs
from devtools.postgres import postgres_server
from geo_assets.geo.store import make_store

BUCKET = "geo-assets-test"
ACCESS_KEY = "geo-assets-test-key"
# Distinctive, so a test can assert that it appears in no message.
SECRET = "sEcReT-" + secrets.token_hex(12)
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), [BUCKET], ACCESS_KEY, SECRET) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    with fake_gcs(tmp_path_factory.mktemp("fake-gcs"), [BUCKET]) as endpoint_url:
        yield endpoint_url


@pytest.fixture(scope="session")
def postgres():
    with postgres_server() as server:
        yield server


@pytest.fixture
def s3_settings(s3_server) -> dict:
    """make_store/StorageResource settings for the S3 server."""
    return dict(
        endpoint_url=s3_server.endpoint_url,
        region=REGION,
        access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key,
    )


@pytest.fixture
def gcs_settings(gcs_server) -> dict:
    """make_store/StorageResource settings for the GCS emulator (anonymous, like the emulator)."""
    return dict(endpoint_url=gcs_server, anonymous=True, project="test-project")


@pytest.fixture
def prefix() -> str:
    """A prefix no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_store(s3_settings, prefix):
    return make_store(f"s3://{BUCKET}/{prefix}", **s3_settings)


@pytest.fixture
def gcs_store(gcs_settings, prefix):
    return make_store(f"gs://{BUCKET}/{prefix}", **gcs_settings)


@pytest.fixture(params=["s3", "gcs"])
def remote_store(request):
    """The same test on both object stores."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def bucket() -> str:
    return BUCKET
