"""Local stand-ins for the control planes that start pods and tasks, for the executor tests.

No Kubernetes API server and no ECS agent can run on this machine, so:

- `kubernetes_api` serves the part of the Kubernetes API that dagster-k8s uses for Jobs (create,
  read status, list, delete; empty pod lists) over HTTP on 127.0.0.1, for the official client.
  Each Job is checked against the Kubernetes OpenAPI schema (kubernetes-validate, strict) and its
  resource quantities as the API server parses them; a Job that fails is refused with 422 Invalid
  and the server's message; an accepted Job's
  container runs as a local process (the kubelet's part): its args, with its env.
- `EcsAgent` watches an ECS API (moto's server) for tasks that RunTask started and runs each task's
  container as a local process: the task definition's command and environment with the overrides
  applied, secrets read from Secrets Manager, and a task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4)
  that names the task and its cluster, and the region variables, as ECS does.

In both, DAGSTER_HOME inside the container (the image's, or the instance ConfigMap's mount) is
mapped to the test's Dagster home, and the image is this checkout's virtualenv: the image name is
recorded, not pulled. Nothing here is imported by the runtime package.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
K8S_VERSION = "1.33"
# The API server parses every resource quantity with this (apimachinery's resource.Quantity); the
# OpenAPI schema only says "string", so the stand-in checks it as the server does.
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


@dataclass
class Container:
    """One container started locally: what was asked for, and the process running it."""

    name: str
    spec: dict  # the Job manifest, or the ECS task as described by the API
    command: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None
    returncode: int | None = field(default=None)

    def poll(self) -> int | None:
        if self.proc is not None and self.returncode is None:
            self.returncode = self.proc.poll()
        return self.returncode

    def wait(self, timeout: float) -> int:
        """The exit code, once the container's process has ended (a step's ends just after its last event)."""
        assert self.proc is not None
        self.returncode = self.proc.wait(timeout=timeout)
        return self.returncode


def _start(container: Container, base_env: dict[str, str], dagster_home: str) -> None:
    env = {
        **base_env,
        **container.env,
        "DAGSTER_HOME": dagster_home,
        "PATH": f"{BIN}{os.pathsep}{base_env.get('PATH', '')}",
    }
    command = [
        str(BIN / container.command[0]) if (BIN / container.command[0]).exists() else container.command[0],
        *container.command[1:],
    ]
    container.proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=open(container.log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(container: Container) -> None:
    if container.proc is not None and container.proc.poll() is None:
        container.proc.terminate()
        try:
            container.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            container.proc.kill()


# --- Kubernetes -------------------------------------------------------------------------------------


class KubernetesJobs:
    """The Jobs the API accepted (name -> Container) and the manifests it refused."""

    def __init__(self, base_env: dict[str, str], dagster_home: str, logs: Path):
        self.base_env, self.dagster_home, self.logs = base_env, dagster_home, logs
        self.jobs: dict[str, Container] = {}
        self.refused: list[tuple[dict, str]] = []
        self.lock = threading.Lock()

    def create(self, namespace: str, manifest: dict) -> tuple[int, dict]:
        import kubernetes_validate

        name = manifest.get("metadata", {}).get("name", "")
        try:
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            self.refused.append((manifest, str(e)))
            path = ".".join(str(p) for p in e.path)
            return 422, _status(422, "Invalid", f'Job.batch "{name}" is invalid: {path}: {e.message}')
        for i, container in enumerate(manifest["spec"]["template"]["spec"]["containers"]):
            for kind, quantities in (container.get("resources") or {}).items():
                for resource, value in quantities.items():
                    if not QUANTITY.match(str(value)):
                        message = (
                            f'Job.batch "{name}" is invalid: spec.template.spec.containers[{i}].resources.{kind}[{resource}]: '
                            f"Invalid value: \"{value}\": quantities must match the regular expression '{QUANTITY.pattern}'"
                        )
                        self.refused.append((manifest, message))
                        return 422, _status(422, "Invalid", message)
        manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        with self.lock:
            if name in self.jobs:
                return 409, _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            (container,) = manifest["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
            job = Container(
                name,
                manifest,
                list(container.get("command", [])) + list(container["args"]),
                env,
                self.logs / f"{name}.log",
            )
            self.jobs[name] = job
        _start(job, self.base_env, self.dagster_home)
        return 201, manifest

    def read(self, name: str) -> tuple[int, dict]:
        job = self.jobs.get(name)
        if job is None:
            return 404, _status(404, "NotFound", f'jobs.batch "{name}" not found')
        rc = job.poll()
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status: dict = {"startTime": now}
        if rc is None:
            status["active"] = 1
        elif rc == 0:
            status.update(succeeded=1, completionTime=now)
        else:
            status.update(failed=1, conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
        return 200, {**job.spec, "status": status}

    def delete(self, name: str) -> tuple[int, dict]:
        job = self.jobs.get(name)
        if job is None:
            return 404, _status(404, "NotFound", f'jobs.batch "{name}" not found')
        _stop(job)
        return 200, _status(200, "", "", status="Success")

    def stop_all(self) -> None:
        for job in self.jobs.values():
            _stop(job)


def _status(code: int, reason: str, message: str, status: str = "Failure") -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": status,
        "message": message,
        "reason": reason,
        "code": code,
    }


_JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?(/status)?$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")


def _handler(jobs: KubernetesJobs):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self):
            path = self.path.split("?", 1)[0]
            return _JOBS.match(path), _PODS.match(path)

        def do_POST(self):
            job, _ = self._route()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if job and not job.group(2):
                return self._reply(*jobs.create(job.group(1), body))
            self._reply(404, _status(404, "NotFound", self.path))

        def do_GET(self):
            job, pod = self._route()
            if job and job.group(2):
                return self._reply(*jobs.read(job.group(2)))
            if job:
                items = [jobs.read(name)[1] for name in list(jobs.jobs)]
                return self._reply(200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": items})
            if pod and not pod.group(2):
                return self._reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
            self._reply(404, _status(404, "NotFound", self.path))

        def do_DELETE(self):
            job, pod = self._route()
            if job and job.group(2):
                return self._reply(*jobs.delete(job.group(2)))
            self._reply(404, _status(404, "NotFound", self.path))

    return Handler


@contextmanager
def kubernetes_api(base_env: dict[str, str], dagster_home: str, workdir: Path) -> Iterator[tuple[Path, KubernetesJobs]]:
    """Serve the stand-in API; yield a kubeconfig file pointing at it, and the Jobs it saw."""
    jobs = KubernetesJobs(base_env, dagster_home, workdir)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(jobs))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = workdir / "kubeconfig"
    host = f"http://127.0.0.1:{server.server_address[1]}"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "local",
                "clusters": [{"name": "local", "cluster": {"server": host}}],
                "users": [{"name": "local", "user": {"token": "local"}}],
                "contexts": [
                    {"name": "local", "context": {"cluster": "local", "user": "local", "namespace": "geo-assets"}}
                ],
            }
        )
    )
    try:
        yield kubeconfig, jobs
    finally:
        server.shutdown()
        jobs.stop_all()


# --- ECS --------------------------------------------------------------------------------------------


class EcsAgent:
    """Runs the tasks that an ECS API (moto's server) started, as local processes, and answers the
    task metadata endpoint for them. Tasks in `skip` (e.g. the one standing for the daemon) are not run."""

    def __init__(self, endpoint_url: str, region: str, base_env: dict[str, str], dagster_home: str, workdir: Path):
        import boto3

        kw = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        self.ecs = boto3.client("ecs", **kw)
        self.secrets = boto3.client("secretsmanager", **kw)
        self.base_env, self.dagster_home, self.workdir = base_env, dagster_home, workdir
        self.tasks: dict[str, Container] = {}
        self.skip: set[str] = set()
        self._known: dict[str, dict] = {}  # task id -> task, for the metadata endpoint
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._metadata_handler())

    def metadata_uri(self, task_arn: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v4/{task_arn.rsplit('/', 1)[-1]}"

    def remember(self, task: dict) -> None:
        self._known[task["taskArn"].rsplit("/", 1)[-1]] = task

    def _metadata_handler(self):
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = self.path.strip("/").split("/")
                task = agent._known.get(parts[1]) if len(parts) >= 2 else None
                if task is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                container = task["containers"][0]["name"] if task.get("containers") else "run"
                body = (
                    {"Cluster": task["clusterArn"], "TaskARN": task["taskArn"]}
                    if parts[2:] == ["task"]
                    else {"Name": container}
                )
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _container(self, task: dict) -> Container:
        definition = self.ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        overrides = {o["name"]: o for o in task.get("overrides", {}).get("containerOverrides", [])}
        (spec,) = [c for c in definition["containerDefinitions"] if c["name"] in overrides] or definition[
            "containerDefinitions"
        ][:1]
        override = overrides.get(spec["name"], {})
        env = {e["name"]: e["value"] for e in spec.get("environment", [])}
        env.update({e["name"]: e["value"] for e in override.get("environment", [])})
        for secret in spec.get("secrets", []):
            env[secret["name"]] = self.secrets.get_secret_value(SecretId=secret["valueFrom"])["SecretString"]
        # What ECS itself puts into every Fargate container: the metadata endpoint and the region.
        region = task["taskArn"].split(":")[3]
        env.update(
            ECS_CONTAINER_METADATA_URI_V4=self.metadata_uri(task["taskArn"]),
            AWS_REGION=region,
            AWS_DEFAULT_REGION=region,
        )
        command = override.get("command") or spec.get("command") or []
        name = task["taskArn"].rsplit("/", 1)[-1]
        return Container(
            name, {"task": task, "taskDefinition": definition}, command, env, self.workdir / f"task-{name}.log"
        )

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            try:
                for cluster in self.ecs.list_clusters()["clusterArns"]:
                    arns = [
                        a
                        for a in self.ecs.list_tasks(cluster=cluster)["taskArns"]
                        if a not in self.tasks and a not in self.skip
                    ]
                    if not arns:
                        continue
                    for task in self.ecs.describe_tasks(cluster=cluster, tasks=arns, include=["TAGS"])["tasks"]:
                        self.remember(task)
                        container = self._container(task)
                        self.tasks[task["taskArn"]] = container
                        _start(container, self.base_env, self.dagster_home)
            except Exception as e:  # keep polling; the test sees the tasks that never ran
                print(f"ecs agent: {e!r}", file=sys.stderr)

    def __enter__(self) -> EcsAgent:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._server.shutdown()
        for container in self.tasks.values():
            _stop(container)
