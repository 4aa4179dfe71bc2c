"""The tie of a step process to its run worker (resources/step_process.py), through real processes: what
it does where the process is no step of a live run worker. The tie itself, a run worker killed mid-step,
is tested through a real run in test_leases.py."""

import os
import subprocess
import sys

from devtools.dagster_dev import ROOT
from resources.step_process import RUN_WORKER_PID

TIE = "from resources.step_process import die_with_run_worker; print(die_with_run_worker())"


def _tie(worker: int | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != RUN_WORKER_PID}
    if worker is not None:
        env[RUN_WORKER_PID] = str(worker)
    return subprocess.run([sys.executable, "-c", TIE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_step_of_a_run_worker_that_already_ended_refuses_to_go_on():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    proc = _tie(ended.pid)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"RunWorkerGone: the run worker (process {ended.pid}) of this step has ended" in proc.stderr


def test_the_child_of_its_run_worker_is_tied_and_other_processes_are_left_alone():
    assert _tie(os.getpid()).stdout.strip() == "True"  # this test's process started it: its run worker
    assert _tie(os.getppid()).stdout.strip() == "False"  # a live worker that is not its parent: a step's own child
    assert _tie(None).stdout.strip() == "False"  # no run worker: steps in one process, a Job, a task
