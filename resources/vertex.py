"""A Dagster Pipes client for Vertex AI custom jobs (Dagster ships no Vertex AI integration).

The job is created, polled and cancelled through Vertex AI's REST API (v1, `customJobs`) with
google-auth credentials; the Pipes context and the job's messages and logs travel through a GCS
bucket (dagster-gcp's PipesGCSContextInjector and PipesGCSMessageReader), whose bootstrap
parameters reach the container as environment variables.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.pipes.client import PipesClientCompletedInvocation, PipesContextInjector, PipesMessageReader
from dagster._core.pipes.utils import open_pipes_session

API_VERSION = "v1"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
SUCCEEDED = "JOB_STATE_SUCCEEDED"
TERMINAL = {SUCCEEDED, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
HTTP_TIMEOUT = 60  # seconds, one API call
GET_ATTEMPTS = 5
TRANSIENT = {429, 500, 502, 503, 504}


class VertexApiError(RuntimeError):
    """Vertex AI refused a call; the message is Vertex's own."""


class VertexJobs:
    """The customJobs collection of one project and region, over REST."""

    def __init__(self, project: str, region: str, api_endpoint: str | None = None, anonymous: bool = False):
        import google.auth
        from google.auth.credentials import AnonymousCredentials
        from google.auth.transport.requests import AuthorizedSession

        self.project, self.region = project, region
        self.endpoint = (api_endpoint or f"https://{region}-aiplatform.googleapis.com").rstrip("/")
        # Application Default Credentials (a service account, Workload Identity); none for a local stand-in.
        credentials = AnonymousCredentials() if anonymous else google.auth.default(scopes=SCOPES)[0]
        self._http = AuthorizedSession(credentials)

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        import requests

        url = f"{self.endpoint}/{API_VERSION}/{path}"
        # Reads are retried through passing faults (network, 429, 5xx); a create or cancel is sent once.
        attempts = GET_ATTEMPTS if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, url, json=body, timeout=HTTP_TIMEOUT)
            except requests.RequestException as exc:
                if attempt == attempts:
                    raise VertexApiError(f"Vertex AI {method} {path}: {exc}") from None
                time.sleep(min(2**attempt, 30))
                continue
            if response.status_code not in TRANSIENT or attempt == attempts:
                break
            time.sleep(min(2**attempt, 30))
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise VertexApiError(f"Vertex AI {method} {path}: HTTP {response.status_code}: {message}")
        return response.json() if response.content else {}

    def create(self, job: dict) -> dict:
        return self._call("POST", f"{self.parent}/customJobs", job)

    def get(self, name: str) -> dict:
        return self._call("GET", name)

    def cancel(self, name: str) -> None:
        self._call("POST", f"{name}:cancel", {})


def vertex_labels(info: Mapping[str, str]) -> dict[str, str]:
    """Dagster's run facts as Vertex labels: lowercase letters, digits, '_' and '-', at most 63 characters."""

    def clean(text: str) -> str:
        return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]

    return {clean(k): clean(v) for k, v in info.items()}


class PipesVertexClient(dg.PipesClient, TreatAsResourceParam):
    """Run a Vertex AI custom job as a Pipes session: bootstrap env in, messages and logs back.

    Every worker pool's container gets the Pipes bootstrap variables in its env, and the job the
    run's facts as labels. The step waits for a terminal state, polling every `poll_interval` s,
    and cancels the job when the step is interrupted or can no longer follow it.
    """

    def __init__(
        self,
        jobs: VertexJobs,
        context_injector: PipesContextInjector,
        message_reader: PipesMessageReader,
        poll_interval: float = 15.0,
        forward_termination: bool = True,
    ):
        self.jobs = jobs
        self.context_injector = context_injector
        self.message_reader = message_reader
        self.poll_interval = poll_interval
        self.forward_termination = forward_termination

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def run(  # type: ignore[override]  # also returns the ended job, which the Pipes client base does not
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        custom_job: dict,
        extras: dict[str, Any] | None = None,
    ) -> tuple[PipesClientCompletedInvocation, dict]:
        """Create `custom_job` (a CustomJob body) and wait for it; return the invocation and the ended job."""
        with open_pipes_session(
            context=context, message_reader=self.message_reader, context_injector=self.context_injector, extras=extras
        ) as session:
            job = _with_pipes(custom_job, session.get_bootstrap_env_vars(), session.default_remote_invocation_info)
            created = self.jobs.create(job)
            context.log.info(
                f"[pipes] Vertex AI custom job {created['name']} created ({created.get('state', 'no state')})"
            )
            try:
                ended = self._wait(context, created)
            except BaseException as exc:  # interrupted, or the job can no longer be watched: leave nothing running
                if self.forward_termination:
                    why = (
                        "step interrupted"
                        if isinstance(exc, DagsterExecutionInterruptedError)
                        else f"lost track of it ({exc})"
                    )
                    context.log.warning(f"[pipes] {why}: cancelling Vertex AI custom job {created['name']}")
                    try:
                        self.jobs.cancel(created["name"])
                    except VertexApiError as error:
                        context.log.warning(f"[pipes] could not cancel {created['name']}: {error}")
                raise
        # Outside the session: every message the job wrote has been read by now.
        return PipesClientCompletedInvocation(session, metadata={"vertex_job": ended["name"]}), ended

    def _wait(self, context, job: dict) -> dict:
        state = job.get("state")
        while state not in TERMINAL:
            time.sleep(self.poll_interval)
            job = self.jobs.get(job["name"])
            if job.get("state") != state:
                state = job.get("state")
                context.log.info(f"[pipes] Vertex AI custom job {job['name']}: {state}")
        return job


def _with_pipes(custom_job: dict, env: Mapping[str, str], info: Mapping[str, str]) -> dict:
    """A copy of the job whose worker pools' containers carry the Pipes bootstrap env, labelled with the run."""
    job = {**custom_job, "labels": {**custom_job.get("labels", {}), **vertex_labels(info)}}
    spec = {**job["jobSpec"], "workerPoolSpecs": []}
    for pool in custom_job["jobSpec"]["workerPoolSpecs"]:
        container = pool["containerSpec"]
        pipes_env = [{"name": k, "value": v} for k, v in env.items()]
        spec["workerPoolSpecs"].append(
            {**pool, "containerSpec": {**container, "env": [*container.get("env", []), *pipes_env]}}
        )
    job["jobSpec"] = spec
    return job
