"""A small client for the Dagster webserver's GraphQL API: launch runs and partition backfills, follow them.

dagster-graphql's `DagsterGraphQLClient` covers launching a job and reading a run's status, but not
partition backfills (`launchPartitionBackfill`) or a run's event log (progress), which `geo-assets
launch --wait` and `geo-assets backfill` need; it also puts the whole query text in its error messages.
So this client speaks the same API with `requests`, and turns every error into one `LaunchError` that
says what was refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import requests

DEFAULT_URL = "http://127.0.0.1:3000/graphql"
LOCATION = "geo_assets"  # workspace.yaml's location_name
REPOSITORY = "__repository__"  # the repository of a code location that has one Definitions
ASSET_JOB = "__ASSET_JOB"  # the implicit job every asset selection runs in
RUN_DONE = ("SUCCESS", "FAILURE", "CANCELED")
BACKFILL_DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")

_ERRORS = "... on PythonError { message } ... on Error { message }"
LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    %s
  }
}""" % _ERRORS
LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on RunConfigValidationInvalid { errors { message } }
    %s
  }
}""" % _ERRORS
RUN_EVENTS = """
query RunEvents($runId: ID!, $cursor: String) {
  runOrError(runId: $runId) { __typename ... on Run { status } %s }
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      events {
        __typename
        ... on MessageEvent { message level stepKey eventType }
        ... on ErrorEvent { error { message } }
        ... on MaterializationEvent { assetKey { path } partition }
      }
    }
    %s
  }
}""" % (_ERRORS, _ERRORS)
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      error { message }
      runs { runId status }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path } numPartitionsTargeted numPartitionsMaterialized numPartitionsFailed
          }
        }
      }
    }
    %s
  }
}""" % _ERRORS

# What `--wait` prints of a run's events: its steps and outputs, never the debug chatter.
SHOWN = {
    "RUN_START", "RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED", "STEP_START", "STEP_SUCCESS",
    "STEP_FAILURE", "ASSET_MATERIALIZATION",
}


class LaunchError(RuntimeError):
    """The webserver refused or could not be reached; the message says why."""


@dataclass(frozen=True)
class RunEvent:
    kind: str  # the Dagster event type, e.g. STEP_START; LOG for a user log line
    step: str | None
    message: str


def ui_url(url: str, path: str) -> str:
    """The UI page `path` of the webserver serving GraphQL at `url`."""
    return url.removesuffix("/").removesuffix("/graphql") + path


def partition_tags(key: str) -> dict[str, str]:
    """The tags that make a run materialise one `date|region` partition (what the UI's launchpad sets)."""
    date, region = key.split("|")
    return {"dagster/partition": key, "dagster/partition/date": date, "dagster/partition/region": region}


def _asset_keys(assets: list[str]) -> list[dict]:
    return [{"path": [a]} for a in assets]


def _tags(tags: dict[str, str]) -> list[dict]:
    return [{"key": k, "value": v} for k, v in tags.items()]


class DagsterClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 30):
        self.url, self.timeout = url, timeout
        self.session = requests.Session()

    def query(self, query: str, variables: dict | None = None) -> dict:
        try:
            response = self.session.post(self.url, json={"query": query, "variables": variables or {}}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise LaunchError(f"no Dagster webserver answers at {self.url} ({type(exc).__name__}); start one with `make dev` or pass --url") from None
        try:
            body = response.json()
        except ValueError:
            raise LaunchError(f"{self.url} answered HTTP {response.status_code} without GraphQL: is it a Dagster webserver's /graphql?") from None
        if body.get("errors"):
            raise LaunchError(f"{self.url} refused the request: {'; '.join(e.get('message', '') for e in body['errors'])}")
        return body["data"]

    @staticmethod
    def _result(result: dict, ok: str, what: str) -> dict:
        if result["__typename"] == ok:
            return result
        details = "; ".join(e["message"] for e in result.get("errors", [])) or result.get("message", "")
        raise LaunchError(f"{what} refused ({result['__typename']}): {details}")

    def launch_run(self, assets: list[str], partition: str, run_config: dict, tags: dict[str, str]) -> str:
        """Launch one run materialising `assets` for a `date|region` partition; return its run id."""
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": ASSET_JOB,
                         "assetSelection": _asset_keys(assets)},
            "runConfigData": run_config,
            "executionMetadata": {"tags": _tags({**tags, **partition_tags(partition)})},
        }
        result = self.query(LAUNCH_RUN, {"params": params})["launchRun"]
        return self._result(result, "LaunchRunSuccess", "launch")["run"]["runId"]

    def launch_backfill(self, assets: list[str], partitions: list[str], run_config: dict, tags: dict[str, str], title: str) -> str:
        """Launch an asset backfill of exactly these `date|region` partitions through the daemon; return its id."""
        params = {
            "assetSelection": _asset_keys(assets), "partitionNames": partitions, "runConfigData": run_config,
            "tags": _tags(tags), "title": title,
        }
        result = self.query(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        return self._result(result, "LaunchBackfillSuccess", "backfill")["backfillId"]

    def follow_run(self, run_id: str, poll: float = 0.5, timeout: float = 24 * 3600) -> Iterator[RunEvent | str]:
        """The run's events as they happen, then its final status (a str)."""
        cursor, deadline = None, time.monotonic() + timeout
        while True:
            data = self.query(RUN_EVENTS, {"runId": run_id, "cursor": cursor})
            run, logs = data["runOrError"], data["logsForRun"]
            if run["__typename"] != "Run":
                raise LaunchError(f"run {run_id}: {run.get('message', run['__typename'])}")
            if logs["__typename"] == "EventConnection":
                cursor = logs["cursor"]
                for event in logs["events"]:
                    kind = event.get("eventType") or ("LOG" if event["__typename"] == "LogMessageEvent" else None)
                    if kind in SHOWN or (kind == "LOG" and event.get("level") in ("INFO", "WARNING", "ERROR")):
                        yield RunEvent(kind, event.get("stepKey"), _describe(event))
            if run["status"] in RUN_DONE:  # events up to the end were read in this same query
                yield run["status"]
                return
            if time.monotonic() > deadline:
                raise LaunchError(f"run {run_id} did not finish in {timeout:.0f} s")
            time.sleep(poll)

    def backfill(self, backfill_id: str) -> dict:
        result = self.query(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return self._result(result, "PartitionBackfill", f"backfill {backfill_id}")

    def follow_backfill(self, backfill_id: str, poll: float = 2, timeout: float = 7 * 24 * 3600,
                        report: Callable[[dict], None] = lambda b: None) -> dict:
        """Poll a backfill until it has ended; `report` sees each state that differs from the last one."""
        last, deadline = None, time.monotonic() + timeout
        while True:
            state = self.backfill(backfill_id)
            summary = (state["status"], [(r["runId"], r["status"]) for r in state["runs"]],
                       str((state.get("assetBackfillData") or {}).get("assetBackfillStatuses")))
            if summary != last:
                report(state)
                last = summary
            runs_done = all(r["status"] in RUN_DONE for r in state["runs"])
            if state["status"] in BACKFILL_DONE and runs_done:
                return state
            if time.monotonic() > deadline:
                raise LaunchError(f"backfill {backfill_id} did not end in {timeout:.0f} s")
            time.sleep(poll)


def _describe(event: dict) -> str:
    if event["__typename"] == "MaterializationEvent":
        partition = f"[{event['partition']}]" if event.get("partition") else ""
        return f"materialised {'/'.join(event['assetKey']['path'])}{partition}"
    error = (event.get("error") or {}).get("message")
    return f"{event['message']}{': ' + error.strip() if error else ''}"
