"""Real parts for the remote-training tests: fake-gcs-server (GCS API) and SeaweedFS (S3 API) carry
the data and the Pipes context and messages; moto's ECS server; a tiny training set in a bucket.

Only the control planes that cannot run offline are stood in for: Vertex AI's (tests/pipes/fake_vertex.py)
and the ECS agent that would run a task's container (tests/pipes/ecs_stand_in.py).
"""

import uuid

import dagster as dg
import pytest
from pipes_support import ACCESS_KEY, DATA_BUCKET, PIPES_BUCKET, REGION, SECRET_KEY, prepare

from devtools.emulators.gcs import fake_gcs
from devtools.emulators.s3 import seaweedfs
from resources.storage import StorageResource


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    with fake_gcs(tmp_path_factory.mktemp("fake-gcs"), [DATA_BUCKET, PIPES_BUCKET]) as url:
        yield url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), [DATA_BUCKET, PIPES_BUCKET], ACCESS_KEY, SECRET_KEY) as server:
        yield server


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def gcs_storage(gcs_server, prefix, instance, monkeypatch) -> StorageResource:
    # The Pipes side talks to the same GCS server through google-cloud-storage, which reads this variable.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    storage = StorageResource(
        root=f"gs://{DATA_BUCKET}/{prefix}", endpoint_url=gcs_server, anonymous=True, project="test-project"
    )
    prepare(storage, instance)
    return storage


@pytest.fixture
def s3_storage(s3_server, prefix, instance, monkeypatch) -> StorageResource:
    # The step's and the job's clients find the S3 server and keys through the AWS standard chain.
    for name, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
    }.items():
        monkeypatch.setenv(name, value)
    storage = StorageResource(root=f"s3://{DATA_BUCKET}/{prefix}", endpoint_url=s3_server.endpoint_url, region=REGION)
    prepare(storage, instance)
    return storage
