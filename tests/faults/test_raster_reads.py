"""Raster reads through GDAL (/vsis3/, /vsigs/) under store faults, on S3 (SeaweedFS) and GCS
(fake-gcs-server). A `predictions` step reads its imagery tiles with GDAL, not with the store's client: its
retries are GDAL's own. Through a fault proxy, reads that meet a 503, a reset or a stalled answer are
retried, each retry is counted in the step's log, and the outputs equal a run's without faults byte for byte;
a store that answers every tile read with 503 fails the step with one error naming the raster, the attempts
and the answer, and publishes nothing."""

import re
import time
import uuid

import dagster as dg
import pytest
from fault_world import BUCKET, RETRIED, SECRET, predict, prepare_predictions, step_errors, storage
from reliability import record

from devtools.faults import FaultProxy
from geo_assets.geo.retries import GDAL_ATTEMPTS
from resources.storage import StorageResource

pytestmark = pytest.mark.slow  # a small model trained, then three prediction runs in processes of their own

MEASURES = [
    "geo_assets/geo/store.py",
    "geo_assets/geo/cog.py",
    "geo_assets/geo/retries.py",
    "resources/storage.py",
    "devtools/faults.py",
    "tests/faults/test_raster_reads.py",
]
TILE_READS = ("/imagery/",)  # GDAL's paths: /bucket/prefix/imagery/... (the GCS JSON API's are %2F-encoded)
STORES = {"s3": ("S3", "SeaweedFS", "/vsis3/"), "gcs": ("GCS", "fake-gcs-server", "/vsigs/")}


@pytest.fixture(params=sorted(STORES))
def api(request) -> str:
    return request.param


@pytest.fixture
def server(api, request) -> str:
    """The endpoint of the session's server of `api`."""
    return request.getfixturevalue("gcs_server") if api == "gcs" else request.getfixturevalue("s3_server").endpoint_url


@pytest.fixture
def proxy(api, server):
    host, port = server.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), api=api) as proxy:
        yield proxy


def _storage(api: str, endpoint: str, prefix: str) -> StorageResource:
    if api == "gcs":
        return StorageResource(root=f"gs://{BUCKET}/{prefix}", endpoint_url=endpoint, project="test", anonymous=True)
    return storage(endpoint, prefix)


def _outputs(store) -> dict[str, bytes]:
    return {k: store.read_bytes(k) for top in ("predictions", "manifests/predictions") for k in store.list(top)}


def _messages(instance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


def test_tile_reads_through_gdal_retry_faults_and_fail_clearly_when_they_never_stop(api, server, proxy, monkeypatch):
    label, name, vsi = STORES[api]
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    direct = _storage(api, server, prefix)
    monkeypatch.setenv("GEO_ASSETS_FAULTS_ROOT", direct.root)
    monkeypatch.setenv("GEO_ASSETS_FAULTS_ENDPOINT", proxy.url)
    monkeypatch.setenv("GEO_ASSETS_FAULTS_SECRET", SECRET)
    store = direct.store()  # what the server holds, seen around the proxy
    with dg.instance_for_test() as instance:
        run_config = prepare_predictions(direct, instance)
        clean = predict(instance, run_config, api=api)
        assert clean.success, step_errors(instance, clean.run_id)
        expected = _outputs(store)
        assert any(k.endswith("/mosaic.tif") for k in expected) and len(expected) > 16

        # Transient faults: fewer in all than one read's attempts (GDAL_ATTEMPTS), so every read gets through.
        proxy.inject("503", times=1, methods=("GET",), paths=TILE_READS)
        proxy.inject("reset", times=1, methods=("GET",), paths=TILE_READS)
        proxy.inject("stall", times=1, methods=("GET",), paths=TILE_READS)
        begin = time.monotonic()
        faulty = predict(instance, run_config, api=api)
        faulty_seconds = time.monotonic() - begin
        injected = dict(proxy.injected)
        proxy.heal()
        assert faulty.success, step_errors(instance, faulty.run_id)
        assert injected == {"503": 1, "reset": 1, "stall": 1}, injected
        messages = _messages(instance, faulty.run_id)
        retried = sum(int(m.group(1)) for m in map(RETRIED.search, messages) if m)
        assert retried == 3, [m for m in messages if "retr" in m]  # each fault one retry, each one counted
        got = _outputs(store)
        assert got == expected  # byte for byte: class tiles, mosaic and manifest

        # A store that answers every tile read with 503: one error naming the raster and the answer.
        proxy.inject("503", methods=("GET",), paths=TILE_READS)
        begin = time.monotonic()
        failing = predict(instance, run_config, api=api)
        failed_after = time.monotonic() - begin
        refused = proxy.injected["503"] - injected["503"]
        proxy.heal()
        assert not failing.success
        message = step_errors(instance, failing.run_id)
        found = re.search(
            rf"cannot read raster {vsi}{BUCKET}/{prefix}/imagery/\S+: still failing after retries: (\d+) \(HTTP 503 x\1\)",
            message,
        )
        assert found, message
        # Every request of the read was tried GDAL_ATTEMPTS times (an open may send more than one).
        assert int(found.group(1)) % (GDAL_ATTEMPTS - 1) == 0, message
        assert _outputs(store) == expected  # nothing published over the last good run's outputs

    record(
        f"{api}-raster-reads",
        f"{label} store: GDAL's tile reads under 503, a reset and a stalled answer",
        "tests/faults/test_raster_reads.py",
        MEASURES,
        injected=(
            f"a proxy before {name} failed the GETs of a predictions step's imagery tile reads (GDAL {vsi}, "
            f"{sum(1 for k in expected if k.endswith('.tif'))} class tiles and a mosaic written): 503 once, one reset "
            "and one stalled answer; then 503 on every tile read, until healed."
        ),
        observed={
            "run with transient faults": f"succeeded in {faulty_seconds:.1f} s",
            "retries counted in the step's log": f"{retried} (one per fault)",
            "objects compared with a run without faults": f"{len(got)}, all equal ({sum(map(len, got.values())):,} bytes)",
            "run with 503 on every read": f"failed after {failed_after:.1f} s ({refused} reads answered 503): `{found.group(0)[:400]}`",
            "outputs after the failed run": "unchanged: nothing published",
        },
    )
