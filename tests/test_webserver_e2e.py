"""`dagster dev` (webserver and daemon) serves the code location: history over GraphQL, runs
launched over GraphQL go through the queue (one at a time per partition) and the daemon's sensors
keep region partitions in step with the catalogue."""

import json
import os
import subprocess
import time

import pytest

from devtools.dagster_dev import ASSETS, BIN, REPO, ROOT, dagster_dev
from devtools.dagster_dev import graphql as _gql
from devtools.dagster_dev import launch as _launch
from devtools.dagster_dev import wait as _wait

RUNS = """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results { runId } } } }"""
ADD_PARTITION = """
mutation Add($repo: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on PythonError { message }
  }
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dev")
    home = tmp / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri()}
    subprocess.run([BIN / "geo-assets", "init"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    with dagster_dev(env, tmp / "dev.log") as url:
        yield url, tmp


def test_ui_serves_the_asset_graph(server):
    url, _ = server
    nodes = _gql(url, ASSETS)["assetNodes"]
    assert {n["assetKey"]["path"][0] for n in nodes} == {
        "imagery_tiles",
        "labels",
        "training_set",
        "evaluation_set",
        "trained_model",
        "model_evaluation",
        "predictions",
        "region_report",
    }


def test_run_launched_over_graphql_succeeds(server):
    url, tmp = server
    run = _wait(
        url, _launch(url, "imagery_job", "2024-06-01|synth-holdout", {"imagery_tiles": {"config": {"tile_size": 64}}})
    )
    assert run["status"] == "SUCCESS", run
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["geo-assets/region"] == "synth-holdout" and tags["geo-assets/source"] == "synthetic"
    manifest = (
        tmp
        / "storage/manifests/imagery_tiles/region=synth-holdout/date=2024-06-01/synthetic-64px-blue-green-red-nir.json"
    )
    assert len(json.loads(manifest.read_text())["tiles"]) == 16 * 16


def test_one_partition_runs_one_at_a_time_and_asset_failures_are_not_retried(server):
    url, _ = server
    # A step failure (bad input, not infrastructure): fails once, is never retried.
    failing = _launch(
        url, "imagery_job", "2024-06-01|synth-train-a", {"imagery_tiles": {"config": {"source": "sample"}}}
    )
    # Two launches of one partition: the queue holds the second until the first has ended.
    config = {"imagery_tiles": {"config": {"tile_size": 64}}}
    first = _launch(url, "imagery_job", "2024-06-01|synth-train-b", config)
    second = _launch(url, "imagery_job", "2024-06-01|synth-train-b", config)
    a, b = _wait(url, first), _wait(url, second)
    assert a["status"] == b["status"] == "SUCCESS", (a, b)
    assert b["startTime"] >= a["endTime"], (a, b)

    failed = _wait(url, failing)
    assert failed["status"] == "FAILURE"
    assert {t["key"]: t["value"] for t in failed["tags"]}["dagster/will_retry"] == "false"
    time.sleep(8)  # longer than the daemon's retry interval (5 s)
    children = _gql(url, RUNS, {"filter": {"tags": [{"key": "dagster/parent_run_id", "value": failing}]}})
    assert children["runsOrError"]["results"] == []


def _regions(url) -> list[str]:
    """Region partitions as the UI sees them (the `labels` asset is partitioned by region)."""
    query = """{ assetNodeOrError(assetKey: {path: ["labels"]}) { ... on AssetNode { partitionKeys } } }"""
    return _gql(url, query)["assetNodeOrError"]["partitionKeys"]


def test_a_region_added_in_the_ui_without_a_footprint_is_removed(server):
    url, _ = server
    added = _gql(url, ADD_PARTITION, {"repo": REPO, "name": "regions", "key": "atlantis"})["addDynamicPartition"]
    assert added["__typename"] == "AddDynamicPartitionSuccess", added
    deadline = time.time() + 90  # the region_partitions sensor ticks every 30 s
    while time.time() < deadline and "atlantis" in _regions(url):
        time.sleep(2)
    regions = _regions(url)
    assert "atlantis" not in regions
    assert {"synth-holdout", "s2-sample"} <= set(regions)  # catalogued regions stay


def _models(url) -> list[str]:
    """Model partitions as the UI sees them (trained_model is partitioned by model)."""
    query = """{ assetNodeOrError(assetKey: {path: ["trained_model"]}) { ... on AssetNode { partitionKeys } } }"""
    return _gql(url, query)["assetNodeOrError"]["partitionKeys"]


def test_model_partitions_that_are_no_model_name_are_removed(server):
    url, _ = server
    hostile = ["../evil", "", "two\nlines"]
    for key in hostile:  # GraphQL (and the UI's "Add partition") accept any string
        added = _gql(url, ADD_PARTITION, {"repo": REPO, "name": "models", "key": key})["addDynamicPartition"]
        assert added["__typename"] == "AddDynamicPartitionSuccess", added
    assert set(hostile) <= set(_models(url))
    deadline = time.time() + 90  # the region_partitions sensor ticks every 30 s
    while time.time() < deadline and set(hostile) & set(_models(url)):
        time.sleep(2)
    models = _models(url)
    assert not set(hostile) & set(models), models
    assert "landcover-unet" in models  # `geo-assets init` registered it: valid names stay
