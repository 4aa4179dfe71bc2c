"""Transient store errors, for real: a fault-injecting proxy (devtools/faults.py) between the platform
and the real S3 server answers 503 SlowDown, resets connections and stalls past the client's read
timeout. An imagery_tiles step on that store retries with backoff and succeeds, its outputs equal a
run's without faults byte for byte, and every retry is counted in the step's log. Faults that never
stop fail the step with one error naming the store, the object and the cause."""

import re
import time
import uuid

import dagster as dg
import pytest
from fault_world import DATE, FIELD, cut_imagery, outputs, prepare, storage
from reliability import record

from devtools.faults import FaultProxy

MEASURES = [
    "geo_assets/geo/store.py",
    "geo_assets/geo/retries.py",
    "resources/storage.py",
    "devtools/faults.py",
    "tests/faults/test_store_errors.py",
]
THIS = "tests/faults/test_store_errors.py"


@pytest.fixture
def proxy(s3_server):
    host, port = s3_server.endpoint_url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port)) as proxy:
        yield proxy


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def test_transient_errors_are_retried_counted_and_change_no_byte(s3_server, proxy, instance, baseline):
    prefix = _prefix()
    faulty = storage(proxy.url, prefix)
    prepare(storage(s3_server.endpoint_url, prefix).store(), instance)  # around the proxy
    proxy.inject("stall", times=1, methods=("PUT",))  # one upload unanswered past the 15 s read timeout
    proxy.inject("503", fraction=0.08)
    proxy.inject("reset", fraction=0.04)
    run = cut_imagery(faulty, instance)
    proxy.heal()

    assert run.result.success, run.failure()
    injected = sum(proxy.injected.values())
    assert proxy.injected["stall"] == 1 and proxy.injected["503"] >= 3 and proxy.injected["reset"] >= 1, proxy.injected
    # Every 503 and stall was one failed attempt that botocore retried, and the step's log counts each. A reset
    # is first retried by aiohttp itself, once, unseen (RFC 9112's retry of an idempotent request); only a
    # second reset of the same request reaches botocore and is counted.
    counted = proxy.injected["503"] + proxy.injected["stall"]
    assert counted <= run.retried <= injected, (
        run.retried,
        dict(proxy.injected),
        [m for m in run.messages if "retr" in m],
    )
    # Each retried operation said so where it ran (tile work's lines reach the step's log too).
    assert any("succeeded after" in m and "HTTP 503 SlowDown" in m for m in run.messages), run.messages

    got = outputs(faulty.store())
    assert sorted(got) == sorted(baseline) and len(got) > 100
    assert got == baseline  # byte for byte: tiles and manifest

    record(
        "s3-transient-errors",
        "S3 store: 503 SlowDown, connection resets and a stalled upload",
        THIS,
        MEASURES,
        injected=(
            f"a proxy before SeaweedFS failed {injected} of {proxy.requests} requests of an imagery_tiles step "
            f"({FIELD.name} {DATE}, {len(got)} objects): 8 % answered 503 SlowDown, 4 % reset, one upload stalled."
        ),
        observed={
            "run": "succeeded",
            "faults injected": ", ".join(f"{k} {v}" for k, v in sorted(proxy.injected.items())),
            "retries counted in the step's log": f"{run.retried} (a first reset of a request is retried by aiohttp, uncounted)",
            "objects compared with a run without faults": f"{len(got)}, all equal ({sum(map(len, got.values())):,} bytes)",
            "step time": f"{run.seconds:.1f} s",
        },
    )


def test_errors_that_never_stop_fail_the_step_naming_the_store_and_the_cause(s3_server, proxy, instance):
    prefix = _prefix()
    faulty, direct = storage(proxy.url, prefix), storage(s3_server.endpoint_url, prefix)
    prepare(direct.store(), instance)
    proxy.inject("503", times=None)
    begin = time.monotonic()
    run = cut_imagery(faulty, instance)
    seconds = time.monotonic() - begin

    assert not run.result.success
    message = run.failure()
    assert "S3 store: " in message and f"{faulty.root}/" in message, message
    assert "after 5 attempts" in message and "HTTP 503 SlowDown x4" in message and "SlowDown" in message, message
    assert len(set(re.findall(r"S3 store: .*", message))) == 1, message  # one error, not one per tile
    assert direct.store().list("manifests") == []  # no output published

    record(
        "s3-errors-never-stop",
        "S3 store: 503 SlowDown on every request",
        THIS,
        MEASURES,
        injected="a proxy before SeaweedFS answered every request of an imagery_tiles step with 503 SlowDown.",
        observed={
            "run": "failed",
            "requests answered 503": proxy.injected["503"],
            "error": f"`{next(m for m in message.splitlines() if 'S3 store: ' in m)[:400]}`",
            "time to fail": f"{seconds:.1f} s",
        },
    )
