"""Run workers that run monitoring can check, where runs are processes of the code server's machine.

Dagster's DefaultRunLauncher (the embedded default, and the deploy/aws and deploy/gcp instances)
starts each run worker as a process beside the code server, but it cannot tell run monitoring
whether that process still lives: a run whose machine or process tree was lost stays STARTED for
good, the next run of its partition waits in the queue behind it, its backfill never ends, and
run retries never start. So each run worker records who it is in a run tag (host, boot, PID
namespace, pid, process start time and run) before its first step, and `ProcessRunLauncher` answers run monitoring from
that record: the process gone, or the machine restarted since, is a failed worker; monitoring then
marks the run failed, and run retries launch it again. A worker on another host cannot be seen
from here and counts as running (run monitoring's timeouts still apply).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

from resources.step_process import WORKER_TAG

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot() -> str:
    """This boot of this machine (Linux); the boot time where there is no boot id."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return str(int(psutil.boot_time()))


def _pid_namespace() -> str:
    """This process's PID namespace (Linux; "" elsewhere): pids are comparable only within one."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def worker_identity(pid: int, run_id: str) -> str:
    """The process `pid` of this machine as the worker of `run_id`, told apart from a later process of that pid
    (its start time), from a process of another container (its PID namespace) and from the worker of the run a
    retry copied its tags from (the run id)."""
    return json.dumps(
        {
            "host": socket.gethostname(),
            "boot": _boot(),
            "pid_namespace": _pid_namespace(),
            "pid": pid,
            "started": round(psutil.Process(pid).create_time(), 2),
            "run": run_id,
        },
        sort_keys=True,
    )


def record_worker(instance: dg.DagsterInstance, run_id: str) -> None:
    instance.add_run_tags(run_id, {WORKER_TAG: worker_identity(os.getpid(), run_id)})


def worker_health(identity: str | None, run_id: str) -> CheckRunHealthResult:
    worker = json.loads(identity) if identity else {}
    if worker.get("run") != run_id:  # not yet recorded (a retry starts with its parent's tags)
        return CheckRunHealthResult(WorkerStatus.RUNNING, "the run worker has not recorded itself yet")
    host, pid = worker["host"], worker["pid"]
    if host != socket.gethostname() or worker["pid_namespace"] != _pid_namespace():
        return CheckRunHealthResult(
            WorkerStatus.RUNNING, f"the run worker is on {host}, in processes that cannot be seen from here"
        )
    if worker["boot"] != _boot():
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the run worker's machine {host} has restarted since the run started"
        )
    try:
        process = psutil.Process(pid)
        alive = abs(process.create_time() - worker["started"]) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    if alive:
        return CheckRunHealthResult(WorkerStatus.RUNNING)
    return CheckRunHealthResult(
        WorkerStatus.FAILED, f"the run worker (process {pid} on {host}) ended without ending the run"
    )


class ProcessRunLauncher(DefaultRunLauncher):
    """Dagster's DefaultRunLauncher, with a run worker health check for run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        return worker_health(run.tags.get(WORKER_TAG), run.run_id)
