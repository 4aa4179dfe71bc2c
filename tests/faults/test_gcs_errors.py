"""Transient GCS errors, for real: the fault proxy (devtools/faults.py) between the platform and a real
GCS server (fake-gcs-server) answers 503, resets connections and stalls an upload. An imagery_tiles step
on that store retries (gcsfs's own backoff, counted by geo/retries.py; a stall ends at the read timeout the
store sets, where gcsfs sets none) and succeeds, with outputs equal byte for byte
to a run's without faults; faults that never stop fail the step with one error naming the store and the
object."""

import re
import time
import uuid

import dagster as dg
import pytest
from fault_world import BUCKET, DATE, FIELD, cut_imagery, outputs, prepare
from reliability import record

from devtools.emulators.gcs import fake_gcs
from devtools.faults import FaultProxy
from resources.storage import StorageResource

MEASURES = [
    "geo_assets/geo/store.py",
    "geo_assets/geo/retries.py",
    "resources/storage.py",
    "devtools/faults.py",
    "tests/faults/test_gcs_errors.py",
]
THIS = "tests/faults/test_gcs_errors.py"


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory):
    with fake_gcs(tmp_path_factory.mktemp("fake-gcs"), [BUCKET]) as endpoint_url:
        yield endpoint_url


@pytest.fixture
def proxy(gcs_server):
    host, port = gcs_server.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), api="gcs") as proxy:
        yield proxy


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def gcs(endpoint_url: str, prefix: str) -> StorageResource:
    return StorageResource(root=f"gs://{BUCKET}/{prefix}", endpoint_url=endpoint_url, project="test")


@pytest.fixture(scope="module")
def gcs_baseline(gcs_server) -> dict[str, bytes]:
    clean = gcs(gcs_server, f"t-{uuid.uuid4().hex[:12]}")
    with dg.instance_for_test() as instance:
        prepare(clean.store(), instance)
        run = cut_imagery(clean, instance)
        assert run.result.success, run.failure()
        assert run.retried == 0
    return outputs(clean.store())


def test_transient_gcs_errors_are_retried_counted_and_change_no_byte(gcs_server, proxy, instance, gcs_baseline):
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    faulty = gcs(proxy.url, prefix)
    prepare(gcs(gcs_server, prefix).store(), instance)  # around the proxy
    proxy.inject("stall", times=1, methods=("POST",))  # one upload unanswered past the 15 s read timeout
    proxy.inject("503", fraction=0.08)
    proxy.inject("reset", fraction=0.04)
    run = cut_imagery(faulty, instance)
    proxy.heal()

    assert run.result.success, run.failure()
    injected = sum(proxy.injected.values())
    assert proxy.injected["stall"] == 1 and proxy.injected["503"] >= 3 and proxy.injected["reset"] >= 1, proxy.injected
    # Every 503 and stall is one failed attempt gcsfs retried, and the step's log counts each; a reset may
    # first be resent by aiohttp itself, unseen (as on S3).
    counted = proxy.injected["503"] + proxy.injected["stall"]
    assert counted <= run.retried <= injected, (run.retried, dict(proxy.injected))
    # Each retried operation said so where it ran, and the step's summary names every cause.
    assert any("succeeded after" in m and "HTTP 503" in m for m in run.messages), run.messages
    summary = [m for m in run.messages if "store requests retried in this step" in m]
    assert any("Timeout on reading data from socket x1" in m for m in summary), summary

    got = outputs(faulty.store())
    assert sorted(got) == sorted(gcs_baseline) and len(got) > 100
    assert got == gcs_baseline  # byte for byte: tiles and manifest

    record(
        "gcs-transient-errors",
        "GCS store: 503, connection resets and a stalled upload",
        THIS,
        MEASURES,
        injected=(
            f"a proxy before fake-gcs-server failed {injected} of {proxy.requests} requests of an imagery_tiles step "
            f"({FIELD.name} {DATE}, {len(got)} objects): 8 % answered 503, 4 % reset, one upload stalled."
        ),
        observed={
            "run": "succeeded",
            "faults injected": ", ".join(f"{k} {v}" for k, v in sorted(proxy.injected.items())),
            "retries counted in the step's log": f"{run.retried} (a first reset of a request may be resent by aiohttp, uncounted)",
            "objects compared with a run without faults": f"{len(got)}, all equal ({sum(map(len, got.values())):,} bytes)",
            "step time": f"{run.seconds:.1f} s",
        },
    )


def test_gcs_errors_that_never_stop_fail_the_step_naming_the_store_and_the_cause(gcs_server, proxy, instance):
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    faulty, direct = gcs(proxy.url, prefix), gcs(gcs_server, prefix)
    prepare(direct.store(), instance)
    proxy.inject("503", times=None)
    begin = time.monotonic()
    run = cut_imagery(faulty, instance)
    seconds = time.monotonic() - begin

    assert not run.result.success
    message = run.failure()
    assert "GCS store: " in message and f"{faulty.root}/" in message, message
    assert "after 6 attempts" in message and "HTTP 503 x5" in message and "Service Unavailable" in message, message
    assert len(set(re.findall(r"GCS store: .*", message))) == 1, message  # one error, not one per tile
    assert direct.store().list("manifests") == []  # no output published

    record(
        "gcs-errors-never-stop",
        "GCS store: 503 on every request",
        THIS,
        MEASURES,
        injected="a proxy before fake-gcs-server answered every request of an imagery_tiles step with 503.",
        observed={
            "run": "failed",
            "requests answered 503": proxy.injected["503"],
            "error": f"`{next(m for m in message.splitlines() if 'GCS store: ' in m)[:400]}`",
            "time to fail": f"{seconds:.1f} s",
        },
    )
