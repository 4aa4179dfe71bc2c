"""A real `dagster dev` (webserver and daemon) on 127.0.0.1 for end-to-end tests, and a small
GraphQL client to launch runs on it and follow them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REPO = {"repositoryLocationName": "geo_assets", "repositoryName": "__repository__"}
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN = (
    """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime tags { key value } } } }"""
)
ASSETS = """{ assetNodes { assetKey { path } partitionDefinition { description } } }"""
DONE = ("SUCCESS", "FAILURE", "CANCELED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=30).json()
    if "errors" in body:
        raise AssertionError(body)
    return body["data"]


@contextmanager
def dagster_dev(env: dict, log: Path, timeout: float = 120) -> Iterator[str]:
    """Serve the code location with `dagster dev` in `env` (its DAGSTER_HOME); yield the GraphQL URL."""
    port = free_port()
    proc = subprocess.Popen(
        [BIN / "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if requests.post(url, json={"query": ASSETS}, timeout=5).json()["data"]["assetNodes"]:
                    break
            except (requests.ConnectionError, KeyError, TypeError, ValueError):
                time.sleep(1)
        else:
            raise RuntimeError("dagster dev did not serve the code location: " + log.read_text()[-3000:])
        yield url
    finally:
        stop_group(proc)  # a run process may still be winding down: the whole group goes


def stop_group(proc: subprocess.Popen, grace: float = 60) -> None:
    """Stop the process group `proc` leads (started with start_new_session): SIGTERM, then SIGKILL after
    `grace` seconds (a loaded machine can keep a graceful stop past a minute)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def launch(url: str, job: str, partition: str, ops: dict) -> str:
    """Launch `job` on a `date|region` partition with run config `{"ops": ops}`; return the run id."""
    date, region = partition.split("|")
    params = {
        "selector": {**REPO, "jobName": job},
        "runConfigData": {"ops": ops},
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": partition},
                {"key": "dagster/partition/date", "value": date},
                {"key": "dagster/partition/region", "value": region},
            ]
        },
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise AssertionError(launched)
    return launched["run"]["runId"]


def wait(url: str, run_id: str, timeout: float = 240) -> dict:
    """The run (status, start and end times, tags) once it has finished."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = graphql(url, RUN, {"id": run_id})["runOrError"]
        if run["status"] in DONE:
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s: {run}")
