"""Transient store errors, for real, on each object store: a fault-injecting proxy (devtools/faults.py)
between the platform and the real server (SeaweedFS for S3, fake-gcs-server for GCS) answers 503,
resets connections and stalls an upload past the client's read timeout. An imagery_tiles step on that
store retries with backoff (botocore's on S3, gcsfs's on GCS; both counted by geo/retries.py) and
succeeds, its outputs equal a run's without faults byte for byte, and every retry is counted in the
step's log. Faults that never stop fail the step with one error naming the store, the object and the
cause."""

import re
import time
import uuid
from dataclasses import dataclass

import dagster as dg
import pytest
from fault_world import BUCKET, DATE, FIELD, cut_imagery, outputs, prepare, storage
from reliability import record

from devtools.faults import FaultProxy
from geo_assets.geo.retries import GCS_ATTEMPTS, S3_ATTEMPTS
from resources.storage import StorageResource

MEASURES = [
    "geo_assets/geo/store.py",
    "geo_assets/geo/retries.py",
    "resources/storage.py",
    "devtools/faults.py",
    "tests/faults/test_store_errors.py",
]
THIS = "tests/faults/test_store_errors.py"


@dataclass(frozen=True)
class Backend:
    """An object store of the suite, as the proxy, the step's errors and RELIABILITY.md name it."""

    api: str  # "s3", "gcs": the proxy's 503 body, the sections' names
    store: str  # how the store's errors name it
    server: str
    endpoint: str
    attempts: int  # of one request, the first included
    busy: str  # a 503 as the retry causes name it
    upload: str  # the method of an object upload

    @property
    def answer(self) -> str:
        return self.busy.removeprefix("HTTP ")

    def storage(self, endpoint: str, prefix: str) -> StorageResource:
        if self.api == "gcs":
            return StorageResource(root=f"gs://{BUCKET}/{prefix}", endpoint_url=endpoint, project="test")
        return storage(endpoint, prefix)


@pytest.fixture(params=["s3", "gcs"])
def backend(request) -> Backend:
    if request.param == "gcs":
        endpoint = request.getfixturevalue("gcs_server")
        return Backend("gcs", "GCS store", "fake-gcs-server", endpoint, GCS_ATTEMPTS, "HTTP 503", "POST")
    endpoint = request.getfixturevalue("s3_server").endpoint_url
    return Backend("s3", "S3 store", "SeaweedFS", endpoint, S3_ATTEMPTS, "HTTP 503 SlowDown", "PUT")


@pytest.fixture
def proxy(backend):
    host, port = backend.endpoint.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), api=backend.api) as proxy:
        yield proxy


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _stores(backend: Backend, proxy: FaultProxy, instance) -> tuple[StorageResource, StorageResource]:
    """(the store through the proxy, the same store around it), its region prepared around the proxy."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    faulty, direct = backend.storage(proxy.url, prefix), backend.storage(backend.endpoint, prefix)
    prepare(direct.store(), instance)
    return faulty, direct


def test_transient_errors_are_retried_counted_and_change_no_byte(backend, proxy, instance, baseline):
    faulty, _ = _stores(backend, proxy, instance)
    proxy.inject("stall", times=1, methods=(backend.upload,))  # one upload unanswered past the 15 s read timeout
    proxy.inject("503", fraction=0.08)
    proxy.inject("reset", fraction=0.04)
    run = cut_imagery(faulty, instance)
    proxy.heal()

    assert run.result.success, run.failure()
    injected = sum(proxy.injected.values())
    assert proxy.injected["stall"] == 1 and proxy.injected["503"] >= 3 and proxy.injected["reset"] >= 1, proxy.injected
    # Every 503 and stall was one failed attempt that the client retried, and the step's log counts each. A
    # reset may first be retried by aiohttp itself, once, unseen (RFC 9112's retry of an idempotent request);
    # only a second reset of the same request reaches the client's retry loop and is counted.
    counted = proxy.injected["503"] + proxy.injected["stall"]
    assert counted <= run.retried <= injected, (
        run.retried,
        dict(proxy.injected),
        [m for m in run.messages if "retr" in m],
    )
    # Each retried operation said so where it ran (tile work's lines reach the step's log too).
    assert any("succeeded after" in m and backend.busy in m for m in run.messages), run.messages

    got = outputs(faulty.store())
    assert sorted(got) == sorted(baseline) and len(got) > 100
    assert got == baseline  # byte for byte: tiles and manifest, as on the S3 server without faults

    record(
        f"{backend.api}-transient-errors",
        f"{backend.store}: {backend.answer}, connection resets and a stalled upload",
        THIS,
        MEASURES,
        injected=(
            f"a proxy before {backend.server} failed {injected} of {proxy.requests} requests of an imagery_tiles "
            f"step ({FIELD.name} {DATE}, {len(got)} objects): 8 % answered {backend.answer}, 4 % reset, one upload "
            "stalled."
        ),
        observed={
            "run": "succeeded",
            "faults injected": ", ".join(f"{k} {v}" for k, v in sorted(proxy.injected.items())),
            "retries counted in the step's log": f"{run.retried} (a first reset of a request may be retried by aiohttp, uncounted)",
            "objects compared with a run without faults": f"{len(got)}, all equal ({sum(map(len, got.values())):,} bytes)",
            "step time": f"{run.seconds:.1f} s",
        },
    )


def test_errors_that_never_stop_fail_the_step_naming_the_store_and_the_cause(backend, proxy, instance):
    faulty, direct = _stores(backend, proxy, instance)
    proxy.inject("503", times=None)
    begin = time.monotonic()
    run = cut_imagery(faulty, instance)
    seconds = time.monotonic() - begin

    assert not run.result.success
    message = run.failure()
    assert f"{backend.store}: " in message and f"{faulty.root}/" in message, message
    retries = f"{backend.busy} x{backend.attempts - 1}"
    assert f"after {backend.attempts} attempts" in message and retries in message, message
    assert ("SlowDown" if backend.api == "s3" else "Service Unavailable") in message, message  # the server's words
    assert len(set(re.findall(rf"{backend.store}: .*", message))) == 1, message  # one error, not one per tile
    assert direct.store().list("manifests") == []  # no output published

    record(
        f"{backend.api}-errors-never-stop",
        f"{backend.store}: {backend.answer} on every request",
        THIS,
        MEASURES,
        injected=f"a proxy before {backend.server} answered every request of an imagery_tiles step with {backend.answer}.",
        observed={
            "run": "failed",
            "requests answered 503": proxy.injected["503"],
            "error": f"`{next(m for m in message.splitlines() if f'{backend.store}: ' in m)[:400]}`",
            "time to fail": f"{seconds:.1f} s",
        },
    )
