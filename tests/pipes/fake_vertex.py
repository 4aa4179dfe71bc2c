"""A stand-in for Vertex AI's control plane (customJobs over REST), which cannot run offline.

It answers CreateCustomJob, GetCustomJob and CancelCustomJob on 127.0.0.1, records every request
as sent, and runs each created job's container command as a local process (`python` meaning this
interpreter) with the job's env on top of a base env, as a worker replica would. Job states follow
the process: PENDING until the first Get, RUNNING while it lives, then SUCCEEDED, FAILED (with a
message worded as Vertex's) or CANCELLED.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Request:
    method: str
    path: str
    body: dict | None
    headers: dict


@dataclass
class Job:
    body: dict
    process: subprocess.Popen
    log: Path
    state: str = "JOB_STATE_PENDING"
    error: dict | None = None
    cancelled: bool = False

    def refresh(self) -> None:
        if self.state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            return
        code = self.process.poll()
        if self.cancelled:
            if code is not None:
                self.state, self.error = "JOB_STATE_CANCELLED", {"code": 1, "message": "CANCELED"}
            else:
                self.state = "JOB_STATE_CANCELLING"
        elif code is None:
            self.state = "JOB_STATE_RUNNING"
        elif code == 0:
            self.state = "JOB_STATE_SUCCEEDED"
        else:
            self.state = "JOB_STATE_FAILED"
            self.error = {
                "code": 3,
                "message": f"The replica workerpool0-0 exited with a non-zero status of {code}. "
                "To find out more about why your job exited please check the logs",
            }


@dataclass
class FakeVertex:
    workdir: Path
    base_env: dict
    requests: list[Request] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    url: str = ""
    get_errors: list[int] = field(default_factory=list)  # HTTP statuses the next GetCustomJob calls answer with

    def job_body(self, name: str) -> dict:
        job = self.jobs[name]
        job.refresh()
        body = {**job.body, "name": name, "state": job.state}
        return {**body, "error": job.error} if job.error else body

    def create(self, parent: str, body: dict) -> tuple[int, dict]:
        pools = (body.get("jobSpec") or {}).get("workerPoolSpecs") or []
        if not body.get("displayName") or not pools or not pools[0].get("containerSpec", {}).get("imageUri"):
            return 400, {
                "error": {
                    "code": 400,
                    "status": "INVALID_ARGUMENT",
                    "message": "displayName and a worker pool with a container image are required",
                }
            }
        name = f"{parent}/customJobs/{len(self.jobs) + 1}"
        container = pools[0]["containerSpec"]
        command = [*container.get("command", []), *container.get("args", [])]
        if command and command[0] == "python":
            command[0] = sys.executable
        env = {**self.base_env, **{e["name"]: e["value"] for e in container.get("env", [])}}
        log = self.workdir / f"job-{len(self.jobs) + 1}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.jobs[name] = Job(body, process, log)
        return 200, {**body, "name": name, "state": "JOB_STATE_PENDING"}

    def cancel(self, name: str) -> None:
        job = self.jobs[name]
        job.cancelled = True
        if job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        for job in self.jobs.values():
            if job.process.poll() is None:
                os.killpg(job.process.pid, signal.SIGKILL)
            job.process.wait()


def _handler(fake: FakeVertex):
    jobs_path = re.compile(r"/v1/(projects/[^/]+/locations/[^/]+)/customJobs")
    job_path = re.compile(r"/v1/(projects/[^/]+/locations/[^/]+/customJobs/\d+)(:cancel)?")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> dict | None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            fake.requests.append(Request(self.command, self.path, body, dict(self.headers)))
            return body

        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self._record()
            if m := jobs_path.fullmatch(self.path):
                return self._answer(*fake.create(m.group(1), body or {}))
            m = job_path.fullmatch(self.path)
            if m and m.group(2) and m.group(1) in fake.jobs:
                fake.cancel(m.group(1))
                return self._answer(200, {})
            self._answer(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"{self.path} not found"}})

        def do_GET(self):  # noqa: N802
            self._record()
            m = job_path.fullmatch(self.path)
            if m and not m.group(2) and m.group(1) in fake.jobs:
                if fake.get_errors:
                    status = fake.get_errors.pop(0)
                    return self._answer(status, {"error": {"code": status, "message": f"injected HTTP {status}"}})
                return self._answer(200, fake.job_body(m.group(1)))
            self._answer(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"{self.path} not found"}})

        def log_message(self, *args):  # quiet
            pass

    return Handler


class running_fake_vertex:
    """`with running_fake_vertex(workdir, base_env) as fake:` serves on fake.url until the block ends."""

    def __init__(self, workdir: Path, base_env: dict):
        self.fake = FakeVertex(Path(workdir), base_env)

    def __enter__(self) -> FakeVertex:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.fake))
        self.fake.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.fake

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.fake.stop()
