"""A step process dies with its run worker, on the `process` runtime (geo_assets/executors.py).

Dagster's multiprocess executor starts each step as a child process of the run worker, and leaves it
running when the worker dies (SIGKILL, the OOM killer): the orphan went on computing for minutes,
writing tiles beside the retry of its run (it cannot publish: its lease is checked first,
resources/leases.py). Linux lets a process ask for a signal when its parent dies (prctl's
PR_SET_PDEATHSIG, which no library wraps without a C extension, hence ctypes): a step asks for SIGKILL
when it takes its first lease, before it writes anything. Elsewhere (not Linux, a step in a Kubernetes
Job or an ECS task, steps run in one process by `execute_in_process`) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import psutil

# Set by the run worker for the step processes it starts. Internal, not a setting: lower case, so no
# GEO_ASSETS_* name.
RUN_WORKER_PID = "geo_assets_run_worker_pid"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class RunWorkerGone(RuntimeError):
    """The run worker that started this step has ended: the step must not write."""


def mark_run_worker() -> None:
    """In the run worker, before its first step starts: the steps it starts will know it."""
    os.environ[RUN_WORKER_PID] = str(os.getpid())


def die_with_run_worker() -> bool:
    """In a step process its run worker started: be killed (SIGKILL) the moment the worker dies. Returns
    whether this process is now tied to it; raises RunWorkerGone when the worker already died."""
    worker = int(os.environ.get(RUN_WORKER_PID) or 0)
    if not worker or worker == os.getpid() or not sys.platform.startswith("linux"):
        return False  # steps in the run worker's own process, or no run worker of ours
    if os.getppid() != worker:
        if psutil.pid_exists(worker):
            return False  # a process a step started: its parent is the step, which is tied
        raise RunWorkerGone(f"the run worker (process {worker}) of this step has ended: the step writes nothing")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed: the step could outlive its run worker")
    if os.getppid() != worker:  # the worker died between the check and the prctl
        raise RunWorkerGone(f"the run worker (process {worker}) of this step has ended: the step writes nothing")
    return True
