"""The disk full: a small tmpfs as the local storage root. The imagery_tiles step fails with one error
saying the storage is full, leaves no half-written file and no manifest, and what it left is whole:
once the disk has room, re-execution from failure reuses the finished tiles and its outputs equal an
uninterrupted run's, byte for byte."""

import re
import time

import dagster as dg
import pytest
from fault_world import IMAGERY_CONFIG, PARTITION, failure, local_imagery_job, outputs, prepare
from reliability import record

from devtools.tmpfs import MountRefused, resize, tmpfs
from geo_assets.geo.store import local_root
from geo_assets.partitions import region_date_partitions
from resources.storage import StorageResource

MEASURES = [
    "geo_assets/geo/store.py",
    "geo_assets/geo/cog.py",
    "geo_assets/engine/batches.py",
    "geo_assets/engine/ledger.py",
    "geo_assets/engine/jobs.py",
    "resources/storage.py",
    "tests/faults/test_disk_full.py",
]
REUSED = re.compile(r"(\d+) of (\d+) tiles already done")


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs too small for the step's outputs (the test grows it later)."""
    where = tmp_path / "small-disk"
    where.mkdir()
    try:
        with tmpfs(where, "1m"):
            yield where
    except MountRefused as exc:
        pytest.skip(f"no small disk to fill: {exc}")


def test_a_full_disk_fails_the_step_clearly_and_leaves_nothing_half_written(small_disk, baseline, monkeypatch):
    root = local_root(small_disk)
    monkeypatch.setenv("GEO_ASSETS_FAULTS_ROOT", root)
    store = StorageResource(root=root).store()
    job, tags = dg.reconstructable(local_imagery_job), region_date_partitions.get_tags_for_partition_key(PARTITION)
    with dg.instance_for_test() as instance:
        prepare(store, instance)
        first = dg.execute_job(job, instance, run_config=IMAGERY_CONFIG, tags=tags)
        assert not first.success
        message = failure(first)
        assert "no space left" in message.lower() and root in message, message

        left = outputs(store)
        temporaries = [
            k for top in ("imagery", "manifests") for k in store.list(top, temporaries=True) if "/.tmp-" in k
        ]
        assert temporaries == []  # no half-written file under any name
        assert left and not any(k.startswith("manifests/") for k in left)
        tiles = {k: v for k, v in left.items() if ".done/" not in k}
        assert {k: baseline.get(k) for k in tiles} == tiles  # what is there is whole

        resize(small_disk, "64m")
        begin = time.monotonic()
        second = dg.execute_job(
            job, instance, tags=tags, reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance)
        )
        assert second.success, failure(second)
        seconds = time.monotonic() - begin
        reused = [m for m in (REUSED.search(e.user_message) for e in instance.all_logs(second.run_id)) if m]
        got = outputs(store)
        assert got == baseline

    record(
        "disk-full",
        "Local storage root on a full disk",
        "tests/faults/test_disk_full.py",
        MEASURES,
        injected=f"a 1 MiB tmpfs as the storage root of an imagery_tiles step whose outputs take {sum(map(len, baseline.values())):,} bytes; then grown to 64 MiB and the run re-executed from failure.",
        observed={
            "first run": f"failed: `{next(m for m in message.splitlines() if 'no space' in m.lower())[:500]}`",
            "half-written files left": len(temporaries),
            "objects left, each equal to an uninterrupted run's": len(tiles),
            "tiles reused by the re-execution": f"{reused[0].group(1)} of {reused[0].group(2)}" if reused else "0",
            "objects compared after the re-execution": f"{len(got)}, all equal",
            "re-execution": f"{seconds:.1f} s",
        },
    )
