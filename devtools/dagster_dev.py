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
        # A run process may still be winding down: the whole group goes. What was served is done with, so
        # a stop that takes long (seen: 60 s under the suite's load, 2 s on a quiet machine) is cut short.
        stop_group(proc, grace=15)


def stop_group(proc: subprocess.Popen, grace: float = 60, linger: float = 10) -> None:
    """Stop the process group `proc` leads (started with start_new_session), leader first.

    The leader alone gets SIGTERM: `dagster dev` (or `dagster-daemon run`) stops what it started
    itself, clients before servers (the webserver and daemon through their shutdown pipes, then the
    code server they call). A SIGTERM to the whole group stopped them all at once instead: with a
    sensor tick in flight, the code server sat in gRPC's 60 s grace for that call while the daemon
    joined the thread waiting on it (30 s per thread), and the code server and its gRPC server
    outlived the leader, still running into the next test, since only the leader was waited on.
    What of the group outlives the leader (a run worker, a code server) then gets SIGTERM, and
    SIGKILL after `linger` seconds: it served only the leader. The leader itself gets SIGKILL (with
    its group) only after `grace` seconds: a loaded machine can keep a graceful stop long."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    _end_group(proc.pid, linger)


def _end_group(pgid: int, linger: float) -> None:
    """SIGTERM what is left of process group `pgid`, SIGKILL it after `linger` seconds."""
    if not _live_members(pgid):
        return  # all of it ended with its leader
    _signal_group(pgid, signal.SIGTERM)
    deadline, killed = time.monotonic() + linger, False
    while _live_members(pgid):
        if not killed and time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            killed = True
        elif killed and time.monotonic() > deadline + 30:
            raise RuntimeError(f"processes {_live_members(pgid)} of group {pgid} outlived SIGKILL")
        time.sleep(0.2)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # its last process ended meanwhile


def _live_members(pgid: int) -> list[int]:
    """The processes of group `pgid` that still run. Zombies are left out: an orphan's zombie waits for
    init to reap it, which a container's init may never do, and it holds nothing."""
    if not Path("/proc/self/stat").exists():  # not Linux: any process of the group, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        except OSError:
            continue  # it ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


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
