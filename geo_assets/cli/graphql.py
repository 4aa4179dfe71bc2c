"""A small client for the Dagster webserver's GraphQL API: launch runs and partition backfills, follow them.

dagster-graphql's `DagsterGraphQLClient` covers launching a job and reading a run's status, but not
partition backfills (`launchPartitionBackfill`) or a run's event log (progress), which `geo-assets
launch --wait` and `geo-assets backfill` need; it also puts the whole query text in its error messages.
So this client speaks the same API with `requests`, and turns every error into one `LaunchError` that
says what was refused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import requests

from geo_assets.settings import by_name

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:3000/graphql"
LOCATION = "geo_assets"  # workspace.yaml's location_name
REPOSITORY = "__repository__"  # the repository of a code location that has one Definitions
ASSET_JOB = "__ASSET_JOB"  # the implicit job every asset selection runs in
RUN_DONE = ("SUCCESS", "FAILURE", "CANCELED")
BACKFILL_DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")

_ERRORS = "... on PythonError { message } ... on Error { message }"
LAUNCH_RUN = (
    """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    %s
  }
}"""
    % _ERRORS
)
LAUNCH_BACKFILL = (
    """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on RunConfigValidationInvalid { errors { message } }
    %s
  }
}"""
    % _ERRORS
)
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
        ... on ErrorEvent { error { message className causes { message } } }
        ... on MaterializationEvent { assetKey { path } partition }
      }
    }
    %s
  }
}""" % (_ERRORS, _ERRORS)
BACKFILL_STATUS = (
    """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      error { message }
      runs { runId status tags { key value } }
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
}"""
    % _ERRORS
)

# What a launch needs of the webserver, read before it: its database (runs; asset events), the code
# location, and whether a daemon dequeues runs. Each storage keeps its own connection pool, so each is read.
# An error's causes are read too: "too many retries for DB connection" hides whether the database refused
# or did not answer.
_ERRORS_CAUSES = "... on PythonError { message causes { message } } ... on Error { message }"
# The run storage alone, asked first: a database that does not answer costs each storage the instance's
# connect timeout six times over, with backoff (dagster-postgres's retries), so one storage says it soonest,
# and this request waits longer than that.
DATABASE = """query Database { runsOrError(limit: 1) { __typename %s } }""" % _ERRORS_CAUSES
DATABASE_WAIT_S = 60
READY = """
query Ready {
  runsOrError(limit: 1) { __typename ... on Runs { results { runId } } %s }
  assetsOrError(limit: 1) { __typename ... on AssetConnection { nodes { id } } %s }
  instance { daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { required lastHeartbeatTime } } }
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name locationOrLoadError { __typename %s } } }
    %s
  }
}""" % (_ERRORS_CAUSES, _ERRORS_CAUSES, _ERRORS_CAUSES, _ERRORS_CAUSES)
# How the webserver's errors name a database that does not answer (psycopg2 through SQLAlchemy) and a
# code server that does not answer (gRPC).
DATABASE_DOWN = (
    "OperationalError",
    "DagsterPostgresException",
    "too many retries for DB connection",
    "could not connect to server",
    "server closed the connection",
)
# geo-assets-webserver's line (geo_assets/webserver/health.py): where the database is, then the driver's error.
WHERE = re.compile(r"cannot reach its database, (\w+ at \S+, database [^:\n]+): ([^\n]+)")
# libpq's word for a database that accepted no connection within the instance's connect_timeout: it does not
# answer (packets dropped, host down), so asking again only waits as long again.
DATABASE_SILENT = "timeout expired"
CODE_SERVER_DOWN = "DagsterUserCodeUnreachableError"
# A code server that stops answering is a restart more often than an outage: the webserver reloads the
# location within seconds of its return. So the client asks again for this long (30 s by default), once
# per client, then says the code server is away. A refused launch is asked again only of an instance
# that queues its runs: the webserver creates a run only after the code server has built its plan, and
# the queue's submit asks the code server nothing; an instance that launches at once may have created
# a run (then failed) when the code server does not answer.
CODE_SERVER_WAIT = by_name("GEO_ASSETS_CODE_SERVER_WAIT_S")
# A running daemon writes a heartbeat every 30 s; Dagster itself calls it unhealthy only after 30 minutes.
DAEMON_SILENT_S = 90

# What `--wait` prints of a run's events: its steps and outputs, never the debug chatter.
SHOWN = {
    "RUN_START",
    "RUN_SUCCESS",
    "RUN_FAILURE",
    "RUN_CANCELED",
    "STEP_START",
    "STEP_SUCCESS",
    "STEP_FAILURE",
    "ASSET_MATERIALIZATION",
}


class LaunchError(RuntimeError):
    """The webserver refused or could not be reached; the message says why."""


class CodeServerDown(LaunchError):
    """The webserver could not reach the code location's code server; the message says what was launched."""


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


def _causes(info: dict | None) -> str:
    """The messages of the exceptions behind a GraphQL error (the webserver's `errorInfo`), one a line."""
    if not isinstance(info, dict):
        return ""
    return "\n".join(
        filter(None, [info.get("message") or "", _causes(info.get("cause")), _causes(info.get("context"))])
    )


class DagsterClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 30, say: Callable[[str], None] | None = None):
        """`say` is told, once, when the client waits for a code server that does not answer."""
        self.url, self.timeout, self.say = url, timeout, say or (lambda line: None)
        self.session = requests.Session()
        self.queued: bool | None = None  # whether the instance queues runs (None: not asked yet, by ready())
        self._waiting_until: float | None = None  # the client's one deadline for a code server away

    def database_down(self, message: str) -> str | None:
        """One line saying the webserver cannot reach its database, when `message` says so."""
        if not any(sign in message for sign in DATABASE_DOWN):
            return None
        named = WHERE.search(message)  # geo-assets-webserver names the database it cannot reach
        if named:
            where, cause = f", {named[1]}", named[2]
        else:  # Dagster's own webserver names only the driver's error
            lines = [line.strip() for line in message.splitlines() if line.strip()]
            cause = next((line for line in lines if "OperationalError" in line or "server" in line), lines[0])
            where = ""
            cause = cause.split(") ", 1)[-1] if cause.startswith("sqlalchemy.") else cause.split(": ", 1)[-1]
        return (
            f"the Dagster webserver at {self.url} cannot reach its database{where}: {cause.strip()[:300]}. "
            "Nothing was launched; start the database (its runs and history are kept) and launch again"
        )

    def code_server_down(self, message: str, maybe_created: bool = False) -> CodeServerDown | None:
        """The refusal of a code server that does not answer, when `message` says so; `maybe_created`: the
        launch itself was refused by an instance not known to queue its runs (a failed run may be left)."""
        if CODE_SERVER_DOWN not in message:
            return None
        line = next(line for line in message.splitlines() if CODE_SERVER_DOWN in line)
        cause = line.split(f"{CODE_SERVER_DOWN}: ", 1)[-1].strip()[:200]
        if maybe_created:
            waited = ""
            after = "If the instance launches runs without a queue, the launch may have left a failed run"
        else:
            waited = f" (waited {CODE_SERVER_WAIT.get()} s, {CODE_SERVER_WAIT.name})"
            after = "Nothing was launched"
        return CodeServerDown(
            f"the code location {LOCATION} does not answer the Dagster webserver at {self.url} ({cause}): its code "
            f"server is stopped or restarting{waited}. {after}; start it and launch again"
        )

    def _until_code_server_answers(self, attempt: Callable[[], T]) -> T:
        """`attempt()`, asked again while it finds the code server away, until the client's one deadline:
        GEO_ASSETS_CODE_SERVER_WAIT_S from the first time any call of this client found it away."""
        while True:
            try:
                return attempt()
            except CodeServerDown:
                wait_s = CODE_SERVER_WAIT.get()
                if self._waiting_until is None:
                    self._waiting_until = time.monotonic() + wait_s
                    if wait_s:
                        self.say(
                            f"the code location {LOCATION} does not answer the Dagster webserver at {self.url}: "
                            f"waiting up to {wait_s} s for its code server"
                        )
                left = self._waiting_until - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(2.0, left))

    def ready(self, attempts: int = 3, wait: float = 1.0) -> list[str]:
        """The webserver answers, reads its database and has the code location loaded; else one LaunchError
        saying which is missing. A database that just came back fails each pooled connection once: retried,
        unless it did not answer at all; a code server that does not answer is waited for a little (a
        restart). Returns warnings: a launch without a daemon waits in the queue."""
        return self._until_code_server_answers(lambda: self._ready(attempts, wait))

    def _ready(self, attempts: int, wait: float) -> list[str]:
        self._database_answers()
        for attempt in range(attempts):
            try:
                data = self.query(READY)
            except LaunchError as exc:
                if self.database_down(str(exc)) is None or DATABASE_SILENT in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(wait)
                continue
            errors = [
                "\n".join([r.get("message", ""), *(c["message"] for c in r.get("causes") or [])])
                for r in (data["runsOrError"], data["assetsOrError"], data["workspaceOrError"])
                if r["__typename"] == "PythonError"
            ]
            down = next((d for d in map(self.database_down, errors) if d), None)
            if down is None:
                break
            if attempt == attempts - 1 or DATABASE_SILENT in down:
                raise LaunchError(down)
            time.sleep(wait)
        if errors:
            raise LaunchError(
                f"the Dagster webserver at {self.url} failed to answer: {errors[0].strip().splitlines()[0]}"
            )
        entries = {e["name"]: e["locationOrLoadError"] for e in data["workspaceOrError"]["locationEntries"]}
        if LOCATION not in entries:
            raise LaunchError(
                f"the Dagster webserver at {self.url} serves no code location {LOCATION!r} "
                f"(it serves: {', '.join(entries) or 'none'})"
            )
        location = entries[LOCATION] or {}
        if location.get("__typename") != "RepositoryLocation":
            error = (location.get("message") or "it is still loading").strip()
            raise self.code_server_down(error) or LaunchError(
                f"the code location {LOCATION} is not loaded in the Dagster webserver at {self.url}: "
                f"{error.splitlines()[0][:300]}"
            )
        daemon = data["instance"]["daemonHealth"]["daemonStatus"]
        self.queued = bool(daemon["required"])  # the queue's daemon is required exactly where runs are queued
        last = daemon["lastHeartbeatTime"]
        if daemon["required"] and (last is None or time.time() - last > DAEMON_SILENT_S):
            since = "never" if last is None else f"not for {time.time() - last:.0f} s"
            return [
                f"the Dagster daemon of the webserver at {self.url} has reported {since}: launched runs wait in "
                "the queue (kept in the instance's database) until it runs again"
            ]
        return []

    def _database_answers(self) -> None:
        """A LaunchError when the webserver's database did not answer a connection (its connect timeout)."""
        try:
            runs = self.query(DATABASE, timeout=DATABASE_WAIT_S)["runsOrError"]
        except LaunchError as exc:
            if DATABASE_SILENT in str(exc):
                raise
            return  # the full check below says what else is wrong
        error = "\n".join([runs.get("message", ""), *(c["message"] for c in runs.get("causes") or [])])
        down = self.database_down(error)
        if down and DATABASE_SILENT in down:
            raise LaunchError(down)

    def query(self, query: str, variables: dict | None = None, timeout: float | None = None) -> dict:
        try:
            response = self.session.post(
                self.url, json={"query": query, "variables": variables or {}}, timeout=timeout or self.timeout
            )
        except requests.RequestException as exc:
            raise LaunchError(
                f"no Dagster webserver answers at {self.url} ({type(exc).__name__}); start one with `make dev` or pass --url"
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise LaunchError(
                f"{self.url} answered HTTP {response.status_code} without GraphQL: is it a Dagster webserver's /graphql?"
            ) from None
        if body.get("errors"):
            messages = "; ".join(e.get("message", "") for e in body["errors"])
            causes = "\n".join(_causes((e.get("extensions") or {}).get("errorInfo")) for e in body["errors"])
            raise LaunchError(
                self.database_down(f"{messages}\n{causes}") or f"{self.url} refused the request: {messages}"
            )
        return body["data"]

    def _result(self, result: dict, ok: str, what: str, maybe_created: bool = False) -> dict:
        if result["__typename"] == ok:
            return result
        messages = [e["message"] for e in result.get("errors", [])] or [result.get("message", "")]
        details = "; ".join(messages)
        database = self.database_down(details)
        if database:
            raise LaunchError(database)
        code_server = self.code_server_down(details, maybe_created)
        if code_server:
            raise code_server
        # Dagster's refusal quotes the value it refused, whatever its size: each message is cut.
        raise LaunchError(f"{what} refused ({result['__typename']}): {'; '.join(map(_cut, messages))}")

    def launch_run(self, assets: list[str], partition: str, run_config: dict, tags: dict[str, str]) -> str:
        """Launch one run materialising `assets` for a `date|region` partition; return its run id."""
        return self.launch_assets(assets, run_config, {**tags, **partition_tags(partition)})

    def launch_assets(self, assets: list[str], run_config: dict, tags: dict[str, str]) -> str:
        """Launch one run materialising `assets`, its partition chosen by `tags` (`dagster/partition`: a region,
        a model name) as the UI's launchpad does; return its run id."""
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": ASSET_JOB,
                "assetSelection": _asset_keys(assets),
            },
            "runConfigData": run_config,
            "executionMetadata": {"tags": _tags(tags)},
        }
        return self._launch(LAUNCH_RUN, "launchRun", "LaunchRunSuccess", "launch", params)["run"]["runId"]

    def launch_backfill(
        self, assets: list[str], partitions: list[str], run_config: dict, tags: dict[str, str], title: str
    ) -> str:
        """Launch an asset backfill of exactly these `date|region` partitions through the daemon; return its id."""
        params = {
            "assetSelection": _asset_keys(assets),
            "partitionNames": partitions,
            "runConfigData": run_config,
            "tags": _tags(tags),
            "title": title,
        }
        return self._launch(LAUNCH_BACKFILL, "launchPartitionBackfill", "LaunchBackfillSuccess", "backfill", params)[
            "backfillId"
        ]

    def _launch(self, mutation: str, field: str, ok: str, what: str, params: dict) -> dict:
        """The result `ok` of `mutation`; asked again while the code server is away only of an instance
        that queues its runs, where a refused launch created nothing."""

        def attempt() -> dict:
            result = self.query(mutation, {"params": params})[field]
            return self._result(result, ok, what, maybe_created=self.queued is not True)

        return self._until_code_server_answers(attempt) if self.queued else attempt()

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

    def follow_backfill(
        self,
        backfill_id: str,
        poll: float = 2,
        timeout: float = 7 * 24 * 3600,
        report: Callable[[dict], None] = lambda b: None,
    ) -> dict:
        """Poll a backfill until it has ended; `report` sees each state that differs from the last one."""
        last, deadline = None, time.monotonic() + timeout
        while True:
            state = self.backfill(backfill_id)
            summary = (
                state["status"],
                [(r["runId"], r["status"]) for r in state["runs"]],
                str((state.get("assetBackfillData") or {}).get("assetBackfillStatuses")),
            )
            if summary != last:
                report(state)
                last = summary
            runs_done = all(r["status"] in RUN_DONE for r in state["runs"])
            if state["status"] in BACKFILL_DONE and runs_done:
                return state
            if time.monotonic() > deadline:
                raise LaunchError(f"backfill {backfill_id} did not end in {timeout:.0f} s")
            time.sleep(poll)


def _cut(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else f"{message[:limit]}... ({len(message):,} characters)"


def _describe(event: dict) -> str:
    if event["__typename"] == "MaterializationEvent":
        partition = f"[{event['partition']}]" if event.get("partition") else ""
        return f"materialised {'/'.join(event['assetKey']['path'])}{partition}"
    # A step's error is Dagster's wrapper ("Error occurred while executing op ..."): the step's own error,
    # the one that says why, is its cause, and is what is shown.
    error = event.get("error") or {}
    causes = [c.get("message") for c in error.get("causes") or []]
    wrapper = error.get("className") == "DagsterExecutionStepExecutionError" and any(causes)
    said = [m.strip() for m in ([] if wrapper else [error.get("message")]) + causes if m and m.strip()]
    return f"{event['message']}{': ' + ' <- '.join(said) if said else ''}"
