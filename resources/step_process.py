"""A step process dies with its run worker, on the `process` runtime (geo_assets/executors.py).

Dagster's multiprocess executor starts each step as a child process of the run worker (multiprocessing),
and leaves it running when the worker dies (SIGKILL, the OOM killer): the orphan went on computing for
minutes, writing tiles beside the retry of its run (it cannot publish: its lease is checked first,
resources/leases.py). Linux lets a process ask for a signal when its parent dies (prctl's
PR_SET_PDEATHSIG, which no library wraps without a C extension, hence ctypes): a step asks for SIGKILL
when it takes its first lease, before it writes anything (every asset that writes takes one).

Only the step's own process is tied: processes it starts are not (a local Dask cluster's workers end
with their nanny; a remote cluster's finish the batches in flight, and the publish check still holds).
A step killed so gets no STEP_FAILURE and releases no lease; the leases of a run that ended hold
nothing. Only a child of the run worker recorded in the run's tags is tied (the worker records itself
before its first step): not a run worker that runs its steps itself (the in-process executor; its
parent is the code server), not steps in a Kubernetes Job or an ECS task, nothing off Linux.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import signal
import sys
import threading

# The run tag in which a run worker records itself before its first step (geo_assets/run_launcher.py).
WORKER_TAG = "geo-assets/run-worker"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class RunWorkerGone(RuntimeError):
    """The run worker that started this step has ended: the step must not write."""


def recorded_worker(tags: dict[str, str], run_id: str) -> int | None:
    """The pid of the run worker recorded in a run's tags (WORKER_TAG), if it is this run's."""
    worker = json.loads(tags.get(WORKER_TAG) or "{}")
    return worker.get("pid") if worker.get("run") == run_id else None


def die_with_run_worker(worker: int | None) -> bool:
    """In a step process that the run worker `worker` (a pid) started: be killed (SIGKILL) the moment it
    dies. Returns whether this process is now tied to it; raises RunWorkerGone when it already died.
    Nothing else is tied: a run worker that runs its steps itself (a parent that is no run worker of
    record: the code server that started it), a process of no run worker."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid != worker or not sys.platform.startswith("linux"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False  # the kernel ties the calling thread: one that ends would untie the process
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed: the step could outlive its run worker")
    # After the prctl, so a death in between is seen too. The parent's pipe, not its pid: a parent that
    # died but was not yet reaped, or whose pid was taken again, still has a pid.
    if not parent.is_alive():
        raise RunWorkerGone(f"the run worker (process {parent.pid}) of this step has ended: the step writes nothing")
    return True
