"""`dagster dev` (webserver and daemon) serves the code location: history over GraphQL, runs
launched over GraphQL go through the queue (one at a time per partition) and the daemon's sensors
keep region partitions in step with the catalogue."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN = """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime tags { key value } } } }"""
RUNS = """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results { runId } } } }"""
ADD_PARTITION = """
mutation Add($repo: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on PythonError { message }
  }
}"""
REPO = {"repositoryLocationName": "geo_assets", "repositoryName": "__repository__"}
ASSETS = """{ assetNodes { assetKey { path } partitionDefinition { description } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dev")
    home = tmp / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri()}
    subprocess.run([BIN / "geo-assets", "init"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    port = _free_port()
    proc = subprocess.Popen(
        [BIN / "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "dev.log", "w"), start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.post(url, json={"query": ASSETS}, timeout=5).json()["data"]["assetNodes"]:
                    break
            except (requests.ConnectionError, KeyError, TypeError, ValueError):
                time.sleep(1)
        else:
            pytest.fail("dagster dev did not serve the code location: " + (tmp / "dev.log").read_text()[-3000:])
        yield url, tmp
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _gql(url, query, variables=None):
    body = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=30).json()
    assert "errors" not in body, body
    return body["data"]


def test_ui_serves_the_asset_graph(server):
    url, _ = server
    nodes = _gql(url, ASSETS)["assetNodes"]
    assert {n["assetKey"]["path"][0] for n in nodes} == {
        "imagery_tiles", "labels", "training_set", "evaluation_set", "trained_model", "model_evaluation",
        "predictions", "region_report",
    }


def _launch(url, job: str, partition: str, config: dict) -> str:
    region, date = partition.split("|")[1], partition.split("|")[0]
    params = {
        "selector": {**REPO, "jobName": job},
        "runConfigData": {"ops": config},
        "executionMetadata": {"tags": [
            {"key": "dagster/partition", "value": partition},
            {"key": "dagster/partition/date", "value": date},
            {"key": "dagster/partition/region", "value": region},
        ]},
    }
    launched = _gql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _wait(url, run_id: str, timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = _gql(url, RUN, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        time.sleep(1)
    pytest.fail(f"run {run_id} did not finish in {timeout} s: {run}")


def test_run_launched_over_graphql_succeeds(server):
    url, tmp = server
    run = _wait(url, _launch(url, "imagery_job", "2024-06-01|synth-holdout", {"imagery_tiles": {"config": {"tile_size": 64}}}))
    assert run["status"] == "SUCCESS", run
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["geo-assets/region"] == "synth-holdout" and tags["geo-assets/source"] == "synthetic"
    manifest = tmp / "storage/manifests/imagery_tiles/region=synth-holdout/date=2024-06-01.json"
    assert len(json.loads(manifest.read_text())["tiles"]) == 16 * 16


def test_one_partition_runs_one_at_a_time_and_asset_failures_are_not_retried(server):
    url, _ = server
    # A step failure (bad input, not infrastructure): fails once, is never retried.
    failing = _launch(url, "imagery_job", "2024-06-01|synth-train-a", {"imagery_tiles": {"config": {"source": "sample"}}})
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
