"""The tie of a step process to its run worker (resources/step_process.py), through real processes: a
multiprocessing child whose parent ended before the tie, one whose parent lives, one whose parent is no
run worker of record, and a process that is no multiprocessing child. The tie itself, a run worker killed mid-step, is tested through a real run in
test_leases.py."""

import subprocess
import sys
import textwrap
import time

from devtools.dagster_dev import ROOT

# A parent that starts a child (spawn, as Dagster's multiprocess executor does) and, with `orphan`, ends
# at once, unjoined, leaving it unreaped by anything but init; the child ties itself once its parent
# is gone (or at once) and writes what came of it.
SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys, time

    def step(out, orphan, parent, worker):
        import ctypes, signal
        if orphan:
            while os.getppid() == parent:
                time.sleep(0.01)
        from resources.step_process import die_with_run_worker
        try:
            result = repr(die_with_run_worker(worker))
            asked = ctypes.c_int()
            ctypes.CDLL(None).prctl(2, ctypes.byref(asked), 0, 0, 0)  # PR_GET_PDEATHSIG
            result += " " + ("SIGKILL" if asked.value == signal.SIGKILL else str(asked.value))
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc}"
        with open(out, "w") as f:
            f.write(result)

    if __name__ == "__main__":
        out, orphan, recorded = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
        worker = os.getpid() if recorded else None
        child = multiprocessing.get_context("spawn").Process(target=step, args=(out, orphan, os.getpid(), worker))
        child.start()
        if orphan:
            print(os.getpid(), flush=True)
            os._exit(0)
        child.join()
""")


def _tie(tmp_path, orphan: bool, recorded: bool = True) -> tuple[str, str]:
    """(what the child's tie came to, the parent's pid when orphaned); `recorded`: the parent is the run
    worker the run's tags name."""
    out, script = tmp_path / f"tie-{orphan}-{recorded}.txt", tmp_path / "steps.py"  # spawn imports the target from it
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(out), "1" if orphan else "0", "1" if recorded else "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for _ in range(3000):
        if out.exists() and out.read_text():
            return out.read_text(), proc.stdout.strip()
        time.sleep(0.01)
    raise AssertionError(f"the child wrote nothing: {proc.stderr}")  # pragma: no cover


def test_a_step_whose_run_worker_already_ended_refuses_to_go_on(tmp_path):
    result, parent = _tie(tmp_path, orphan=True)
    assert result == f"RunWorkerGone: the run worker (process {parent}) of this step has ended: the step writes nothing"


def test_a_step_of_a_live_run_worker_is_tied(tmp_path):
    assert _tie(tmp_path, orphan=False)[0] == "True SIGKILL"  # the kernel holds the signal asked for


def test_a_child_of_a_process_that_is_no_recorded_run_worker_is_left_alone(tmp_path):
    assert _tie(tmp_path, orphan=False, recorded=False)[0] == "False 0"  # a run worker's child of the code server


def test_a_process_multiprocessing_did_not_start_is_left_alone():
    tie = "import os; from resources.step_process import die_with_run_worker; print(die_with_run_worker(os.getppid()))"
    proc = subprocess.run([sys.executable, "-c", tie], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr  # steps in one process, a Job, a task
