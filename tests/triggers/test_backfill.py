"""Backfills: `geo-assets backfill` launches a partition backfill of exactly one region's dates, with run
config, through the daemon; the region x date assets take a range in one run (BackfillPolicy.single_run),
also from `dagster asset materialize --partition-range`; partitions that cannot succeed are refused."""

import re
import subprocess

import dagster as dg
import pytest

from devtools.dagster_dev import BIN, ROOT, graphql
from geo_assets.assets.common import digest
from geo_assets.cli.demo import only_output
from geo_assets.cli.graphql import DagsterClient
from geo_assets.geo.acquisitions import pick_imagery

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status partitionNames assetSelection { path } runs { runId status tags { key value } } }
  }
}"""
BACKFILLS = """{ partitionBackfillsOrError { ... on PartitionBackfills { results { id } } } }"""
DATES = ["2024-06-03", "2024-06-04", "2024-06-05"]


def _backfill_ids(url) -> set[str]:
    return {b["id"] for b in graphql(url, BACKFILLS)["partitionBackfillsOrError"]["results"]}


def _materialized(world, asset: str, region: str) -> set[str]:
    # The date of each manifest key: ...region=R/date=D/<variant>[/margin-Npx].json
    return {
        k.split("date=", 1)[1].split("/", 1)[0].removesuffix(".json")
        for k in world.store.list(f"manifests/{asset}")
        if f"region={region}/" in k
    }


def test_backfill_of_one_regions_dates_runs_once_through_the_daemon(world, server):
    proc = world.cli(
        "backfill", "--region", "tiny-field", "--from", DATES[0], "--to", DATES[-1], "--wait", "--url", server
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    backfill_id = re.search(r"launched backfill (\S+) of 3 partitions", proc.stdout).group(1)
    assert f"{server.removesuffix('/graphql')}/runs/b/{backfill_id}" in proc.stdout
    assert "imagery_tiles 3/3, predictions 3/3, region_report 3/3" in proc.stdout
    assert proc.stdout.strip().endswith(f"backfill {backfill_id}: COMPLETED_SUCCESS")

    backfill = graphql(server, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
    assert sorted(backfill["partitionNames"]) == [f"{d}|tiny-field" for d in DATES]  # no other region's keys
    assert sorted(a["path"][0] for a in backfill["assetSelection"]) == ["imagery_tiles", "predictions", "region_report"]
    (run,) = backfill["runs"]  # the three assets and three dates in one run: one process start-up
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        f"{DATES[0]}|tiny-field",
        f"{DATES[-1]}|tiny-field",
    )
    assert tags["geo-assets/trigger"] == "cli-backfill" and tags["geo-assets/model-version"] == world.version
    assert tags["geo-assets/date"] == f"{DATES[0]}...{DATES[-1]}"

    for date in DATES:  # each partition stored as if it had run alone, by the version the run config chose
        manifest = world.store.read_json(
            only_output(world.store, "predictions", "landcover-unet", world.version, "tiny-field", date)
        )
        assert (manifest["date"], manifest["version"]) == (date, world.version)
        assert [
            k
            for k in world.store.list(f"reports/landcover-unet/{world.version}/tiny-field/{date}")
            if k.endswith("/preview.png")
        ]
    assert not _materialized(world, "imagery_tiles", "tiny-holdout") & set(DATES)


@pytest.mark.parametrize(
    "args, env, message",
    [
        (
            ["--region", "s2-sample", "--from", "2020-01-01", "--to", "2020-01-05"],
            {},
            "is one fixed scene of 2020-01-01: 4 of 5 date(s) have no imagery (2020-01-02, 2020-01-03, 2020-01-04 and 1 more)",
        ),
        (
            ["--region", "tiny-field", "--from", "2024-06-01", "--to", "2024-06-10"],
            {"GEO_ASSETS_MAX_BACKFILL_PARTITIONS": "5"},
            "2024-06-01 to 2024-06-10 is 10 dates; a backfill may hold at most 5 partitions",
        ),
        (
            ["--region", "tiny-field", "--from", "2024-06-10", "--to", "2024-06-01"],
            {},
            "--from 2024-06-10 is after --to 2024-06-01",
        ),
        (
            ["--region", "tiny-field", "--from", "2024-06-01", "--to", "2024-06-02"],
            {"GEO_ASSETS_MAX_BACKFILL_PARTITIONS": "inf"},
            "GEO_ASSETS_MAX_BACKFILL_PARTITIONS='inf': must be a whole number from 1 to 10,000,000",
        ),
    ],
)
def test_a_backfill_that_cannot_succeed_is_refused_before_launch(world, server, args, env, message):
    before = _backfill_ids(server)
    # The first case in a fresh process, the others through the same code in this one.
    proc = (world.cli if args[1] == "s2-sample" else world.main)("backfill", *args, "--url", server, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert _backfill_ids(server) == before


def test_partition_range_from_the_dagster_cli(world, monkeypatch):
    """The documented case (the launching guide shows a week): a range of one region's imagery in one run, without the daemon."""
    dates = ["2024-07-01", "2024-07-02", "2024-07-03"]
    proc = subprocess.run(
        [
            BIN / "dagster",
            "asset",
            "materialize",
            "-m",
            "geo_assets.definitions",
            "--select",
            "imagery_tiles",
            "--partition-range",
            f"{dates[0]}|tiny-holdout...{dates[-1]}|tiny-holdout",
        ],
        cwd=ROOT,
        env=world.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _materialized(world, "imagery_tiles", "tiny-holdout") >= set(dates)
    assert not _materialized(world, "imagery_tiles", "tiny-field") & set(dates)  # the range is one region's

    monkeypatch.setenv("DAGSTER_HOME", world.env["DAGSTER_HOME"])  # dagster.yaml reads it
    with dg.DagsterInstance.from_config(world.env["DAGSTER_HOME"]) as instance:
        events = instance.fetch_materializations(dg.AssetKey("imagery_tiles"), limit=10).records
        ours = [e for e in events if e.partition_key in {f"{d}|tiny-holdout" for d in dates}]
        assert len({e.run_id for e in ours}) == 1 and len(ours) == 3
        for event in ours:  # each partition carries its own manifest's digest and tile count
            manifest = pick_imagery(world.store, "tiny-holdout", event.partition_key[:10])[1]
            metadata = event.asset_materialization.metadata
            assert metadata["manifest_digest"].value == digest(manifest)
            assert metadata["tile_count"].value == len(manifest["tiles"]) == 1


def test_the_readme_curl_backfill_works(world, server, readme_curl):
    answer = readme_curl(server, "Backfills", {"synth-holdout": "tiny-field", "2024-06-0": "2024-08-1"})
    launched = answer["data"]["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", answer
    state = DagsterClient(server).follow_backfill(launched["backfillId"], poll=1, timeout=600)
    assert state["status"] == "COMPLETED_SUCCESS" and [r["status"] for r in state["runs"]] == ["SUCCESS"]
    assert {"2024-08-11", "2024-08-12", "2024-08-13"} <= _materialized(world, "imagery_tiles", "tiny-field")
