"""A mosaic's upload interrupted mid-way: a `predictions` step on S3 whose every upload of its class mosaic
is cut after half its bytes reached the server (the fault proxy's "cut", both connections reset). The step
fails with one error naming the store and the mosaic; no object lies under the mosaic's name, no manifest
names it; once the store answers again, re-execution from failure succeeds, reusing every class tile already
written, and its mosaic is whole: every tile's pixels are the mosaic's at that tile's place."""

import re
import time
import uuid

import dagster as dg
import numpy as np
import pytest
import rasterio
from fault_world import (
    BUCKET,
    PREDICTED_TILE,
    SECRET,
    predict,
    prepare_predictions,
    step_errors,
    storage,
)
from reliability import record

pytestmark = pytest.mark.slow  # a small model trained, then two prediction runs in processes of their own: minutes

MEASURES = [
    "geo_assets/geo/mosaic.py",
    "geo_assets/geo/store.py",
    "geo_assets/geo/retries.py",
    "geo_assets/assets/predictions.py",
    "resources/storage.py",
    "devtools/faults.py",
    "tests/faults/test_mosaic_interrupted.py",
]
REUSED = re.compile(r"(\d+) of (\d+) tiles already done")


def test_a_mosaic_upload_cut_mid_way_leaves_nothing_under_its_name_and_a_rerun_succeeds(
    s3_server, s3_proxy, monkeypatch
):
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("GEO_ASSETS_FAULTS_ROOT", f"s3://{BUCKET}/{prefix}")
    monkeypatch.setenv("GEO_ASSETS_FAULTS_ENDPOINT", s3_proxy.url)
    monkeypatch.setenv("GEO_ASSETS_FAULTS_SECRET", SECRET)
    direct = storage(s3_server.endpoint_url, prefix)
    store, proxy = direct.store(), s3_proxy  # the store: what the server holds, seen around the proxy
    with dg.instance_for_test() as instance:
        run_config = prepare_predictions(direct, instance)

        proxy.inject("cut", methods=("PUT",), paths=("/mosaic.tif",))  # every upload of the mosaic, until healed
        begin = time.monotonic()
        first = predict(instance, run_config)
        failed_after = time.monotonic() - begin
        proxy.heal()
        assert not first.success
        message = step_errors(instance, first.run_id)
        found = re.search(rf"S3 store: [\w ]+ s3://{BUCKET}/{prefix}/(predictions/\S+/mosaic\.tif) failed", message)
        assert found, message
        mosaic = found.group(1)
        cuts = proxy.injected["cut"]
        assert cuts >= 5 and proxy.cut_bytes > 0, (dict(proxy.injected), proxy.cut_bytes)  # every attempt reached it

        # Nothing under the mosaic's name, and nothing that names it: the step's manifest was never published.
        assert not store.exists(mosaic)
        assert not store.list("manifests/predictions")
        written = [k for k in store.list(mosaic.rsplit("/", 1)[0]) if k.endswith(".tif")]
        assert written and mosaic not in written  # the class tiles before it are stored

        second = predict(instance, run_config, after=first.run_id)  # the store answers again: re-executed from failure
        assert second.success, step_errors(instance, second.run_id)
        reused = [m for m in (REUSED.search(e.user_message) for e in instance.all_logs(second.run_id)) if m]
        assert [(m.group(1), m.group(2)) for m in reused] == [("16", "16")]  # every class tile was done before it
        (manifest_key,) = store.list("manifests/predictions")
        manifest = store.read_json(manifest_key)
        assert manifest["mosaic"] == mosaic and store.exists(mosaic)
        imagery = store.read_json(manifest["imagery"])
        assert len(manifest["tiles"]) == len(imagery["tiles"]) == 16
        compared = 0
        with store.env(), rasterio.open(store.path(mosaic)) as whole:
            for entry, tile in zip(manifest["tiles"], imagery["tiles"]):
                with rasterio.open(store.path(entry["path"])) as part:
                    window = whole.window(*tile["bounds"]).round_offsets().round_lengths()
                    assert np.array_equal(whole.read(1, window=window), part.read(1)), entry["path"]
                    compared += part.width * part.height

    record(
        "mosaic-write-interrupted",
        "A prediction mosaic's upload cut mid-way",
        "tests/faults/test_mosaic_interrupted.py",
        MEASURES,
        injected=(
            "a proxy before SeaweedFS passed half of each upload of a predictions step's class mosaic "
            f"({len(manifest['tiles'])} tiles of {PREDICTED_TILE} px) to the server, then reset both connections, until healed; "
            "then the run was re-executed from failure."
        ),
        observed={
            "first run": f"failed after {failed_after:.1f} s: `{next(m for m in message.splitlines() if 'S3 store: ' in m)[:500]}`",
            "uploads cut": f"{cuts} ({proxy.cut_bytes:,} bytes reached the server)",
            "objects under the mosaic's name": "0; no manifest published",
            "class tiles reused by the re-execution": f"{reused[0].group(1)} of {reused[0].group(2)}",
            "mosaic after the re-execution": f"whole: {compared:,} pixels equal to its {len(manifest['tiles'])} tiles'",
        },
    )
