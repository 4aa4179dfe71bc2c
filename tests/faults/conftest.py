"""The fault suite's servers: a SeaweedFS S3 server and a fake-gcs-server per session (faults go through a
proxy in front of them, never into them), and one per test for the tests that kill the server."""

import pytest
from fault_world import ACCESS_KEY, BUCKET, SECRET

from devtools.emulators.gcs import fake_gcs
from devtools.emulators.s3 import seaweedfs
from devtools.faults import FaultProxy


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), [BUCKET], ACCESS_KEY, SECRET) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    with fake_gcs(tmp_path_factory.mktemp("fake-gcs"), [BUCKET]) as endpoint_url:
        yield endpoint_url


@pytest.fixture
def s3_proxy(s3_server):
    """A fault proxy in front of the session's S3 server."""
    host, port = s3_server.endpoint_url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port)) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def baseline(s3_server) -> dict[str, bytes]:
    """The outputs of the fault tests' step run with no fault: what every run that survived one must equal."""
    import uuid

    import dagster as dg
    from fault_world import cut_imagery, outputs, prepare, storage

    clean = storage(s3_server.endpoint_url, f"t-{uuid.uuid4().hex[:12]}")
    with dg.instance_for_test() as instance:
        prepare(clean.store(), instance)
        run = cut_imagery(clean, instance)
        assert run.result.success, run.failure()
        assert run.retried == 0
    return outputs(clean.store())
