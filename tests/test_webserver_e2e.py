"""`dagster dev` (webserver and daemon) serves the code location: history over GraphQL, and a run
launched over GraphQL goes through the queue and succeeds."""

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
RUN = """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"""
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
        "imagery_tiles", "labels", "trained_model", "model_evaluation", "predictions", "region_report",
    }


def test_run_launched_over_graphql_succeeds(server):
    url, tmp = server
    params = {
        "selector": {"repositoryLocationName": "geo_assets", "repositoryName": "__repository__", "jobName": "imagery_job"},
        "runConfigData": {"ops": {"imagery_tiles": {"config": {"tile_size": 64}}}},
        "executionMetadata": {"tags": [
            {"key": "dagster/partition", "value": "2024-06-01|synth-holdout"},
            {"key": "dagster/partition/date", "value": "2024-06-01"},
            {"key": "dagster/partition/region", "value": "synth-holdout"},
        ]},
    }
    launched = _gql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.time() + 180
    while time.time() < deadline:
        run = _gql(url, RUN, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert run["status"] == "SUCCESS", run
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["geo-assets/region"] == "synth-holdout" and tags["geo-assets/source"] == "synthetic"
    manifest = tmp / "storage/manifests/imagery_tiles/region=synth-holdout/date=2024-06-01.json"
    assert len(json.loads(manifest.read_text())["tiles"]) == 16 * 16
