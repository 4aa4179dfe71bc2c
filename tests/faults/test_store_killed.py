"""The object store's server (SeaweedFS for S3, fake-gcs-server for GCS) killed (SIGKILL) while an
imagery_tiles step writes its tiles: no object is ever visible half-written under its final name, the
step fails naming the store, and once the server is started again on the same data and port,
re-execution from failure reuses the finished tiles and its outputs equal an uninterrupted run's, byte
for byte. The server is this test's own, never the session's."""

import os
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import rasterio
from fault_world import (
    ACCESS_KEY,
    BUCKET,
    IMAGERY_CONFIG,
    PARTITION,
    SECRET,
    failure,
    gcs_imagery_job,
    outputs,
    prepare,
    s3_imagery_job,
    storage,
)
from reliability import record

from devtools.emulators.gcs import gcs_server
from devtools.emulators.s3 import seaweedfs
from geo_assets.geo.retries import GCS_ATTEMPTS, S3_ATTEMPTS
from geo_assets.partitions import region_date_partitions
from resources.storage import StorageResource

MEASURES = [
    "geo_assets/geo/store.py",
    "geo_assets/geo/retries.py",
    "geo_assets/engine/batches.py",
    "geo_assets/engine/ledger.py",
    "geo_assets/engine/jobs.py",
    "resources/compute.py",
    "resources/storage.py",
    "devtools/emulators/gcs.py",
    "tests/faults/test_store_killed.py",
]
REUSED = re.compile(r"(\d+) of (\d+) tiles already done")
KILL_AFTER = 16  # tile objects in the bucket: the step is well under way


@dataclass(frozen=True)
class Server:
    """A store whose server this test starts, kills and starts again on the same data and port."""

    api: str  # "s3", "gcs"
    store: str  # how the store's errors name it
    name: str
    attempts: int  # of one request, the first included
    cause: str  # the client's error for a server that is gone

    def start(self, workdir: Path, again=None):
        if self.api == "gcs":
            return gcs_server(workdir, [BUCKET], data=workdir / "data", port=again.port if again else 0)
        return seaweedfs(workdir, [BUCKET], ACCESS_KEY, SECRET, ports=again.ports if again else ())

    def storage(self, endpoint: str, prefix: str) -> StorageResource:
        if self.api == "gcs":
            return StorageResource(
                root=f"gs://{BUCKET}/{prefix}", endpoint_url=endpoint, project="test", anonymous=True
            )
        return storage(endpoint, prefix)

    @property
    def job(self):
        return dg.reconstructable(gcs_imagery_job if self.api == "gcs" else s3_imagery_job)


SERVERS = [
    Server("s3", "S3 store", "SeaweedFS", S3_ATTEMPTS, "EndpointConnectionError"),
    Server("gcs", "GCS store", "fake-gcs-server", GCS_ATTEMPTS, "ClientConnectorError"),
]


@pytest.mark.parametrize("server", SERVERS, ids=[s.api for s in SERVERS])
def test_store_server_killed_mid_write_then_restarted(server, tmp_path, baseline, monkeypatch):
    workdir, prefix = tmp_path / server.name, f"t-{uuid.uuid4().hex[:12]}"
    workdir.mkdir()
    monkeypatch.setenv("GEO_ASSETS_FAULTS_ROOT", server.storage("", prefix).root)
    monkeypatch.setenv("GEO_ASSETS_FAULTS_SECRET", SECRET)
    job, tags = server.job, region_date_partitions.get_tags_for_partition_key(PARTITION)
    with dg.instance_for_test() as instance:
        with server.start(workdir) as running:
            monkeypatch.setenv("GEO_ASSETS_FAULTS_ENDPOINT", running.endpoint_url)
            direct = server.storage(running.endpoint_url, prefix)
            prepare(direct.store(), instance)
            killed: list[float] = []

            def kill_mid_write() -> None:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if len(direct.store().list("imagery")) >= KILL_AFTER:
                        os.killpg(running.pid, signal.SIGKILL)  # this test's server: its own process group
                        killed.append(time.monotonic())
                        return
                    time.sleep(0.05)

            killer = threading.Thread(target=kill_mid_write)
            killer.start()
            first = dg.execute_job(job, instance, run_config=IMAGERY_CONFIG, tags=tags)
            failed_at = time.monotonic()
            killer.join()
        assert killed, "the step ended before the server could be killed mid-write"
        assert not first.success
        message = failure(first)
        # One error: the store, the object it was writing, how often it tried, and why it gave up.
        assert re.search(
            rf"{server.store}: [\w ]+ {direct.root}/\S+ failed after {server.attempts} attempts", message
        ), message
        assert server.cause in message, message

        restart = time.monotonic()
        with server.start(workdir, again=running) as again:
            restarted = time.monotonic() - restart
            assert again.endpoint_url == running.endpoint_url
            store = direct.store()
            # Whatever the kill left is whole: every object under a final name has a finished tile's bytes.
            left = {k: v for k, v in outputs(store).items() if ".done/" not in k}  # the finished batches' records aside
            assert left and not any(k.startswith("manifests/") for k in left)
            assert {k: baseline.get(k) for k in left} == left

            second = dg.execute_job(
                job, instance, tags=tags, reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance)
            )
            assert second.success, failure(second)
            recovered = time.monotonic() - killed[0]
            reused = [REUSED.search(e.user_message) for e in instance.all_logs(second.run_id)]
            reused = [(int(m.group(1)), int(m.group(2))) for m in reused if m]
            assert len(reused) == 1 and reused[0][0] >= 4, reused  # at least one batch's record survived
            got = outputs(store)
            assert got == baseline
            manifest = store.read_json(next(k for k in got if k.startswith("manifests/")))
            with store.env():
                for tile in manifest["tiles"]:
                    with rasterio.open(store.path(tile["path"])) as src:
                        src.read()

    record(
        f"{server.api}-server-killed",
        f"{server.store.removesuffix(' store')} server killed mid-write, restarted on its data",
        "tests/faults/test_store_killed.py",
        MEASURES,
        injected=(
            f"SIGKILL of the {server.name} server once {KILL_AFTER} tile objects of an imagery_tiles step "
            f"({len(baseline)} objects in all) were in the bucket; then the server started on the same data and port, "
            "and the run re-executed from failure."
        ),
        observed={
            "first run": f"failed {failed_at - killed[0]:.1f} s after the kill: `{next(m for m in message.splitlines() if f'{server.store}: ' in m)[:500]}`",
            "objects visible after the kill": f"{len(left)}, each equal to an uninterrupted run's ({sum(map(len, left.values())):,} bytes)",
            "tiles reused by the re-execution": f"{reused[0][0]} of {reused[0][1]}",
            "objects compared after the re-execution": f"{len(got)}, all equal; every tile of the manifest opened",
            "server restart": f"{restarted:.1f} s",
            "time to recover (kill to re-execution done)": f"{recovered:.1f} s",
        },
    )
