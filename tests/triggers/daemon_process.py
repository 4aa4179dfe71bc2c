"""A real `dagster-daemon run` over the code location, for the sensor tests and the soak: started,
stopped and started again on one Dagster home, whose instance keeps the sensor's cursor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from devtools.dagster_dev import stop_group

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def dagster_home(path: Path, max_concurrent_runs: int) -> Path:
    """The project's instance yaml, with the run queue's size set (0: runs wait in the queue, so a
    sensor test sees the requests without running them), its storage at `path` by name (the test
    process opens it too, under another DAGSTER_HOME)."""
    path.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["storage"] = {"sqlite": {"base_dir": str(path)}}
    config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path


class Daemon:
    def __init__(self, env: dict, log: Path):
        self.env, self.log, self.proc = env, log, None

    def cli(self, *args: str, timeout: float = 180) -> str:
        """Run `dagster ...` or `geo-assets ...` in the same environment; fail with its output."""
        proc = subprocess.run(
            [BIN / args[0], *args[1:]], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {proc.stdout[-2000:]}{proc.stderr[-3000:]}")
        return proc.stdout

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [BIN / "dagster-daemon", "run", "-w", "workspace.yaml"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a graceful stop, the daemon first (it stops its code server); SIGKILL: the whole
        group at once, as a lost machine."""
        if self.proc is not None and self.proc.poll() is None:
            if sig == signal.SIGTERM:
                stop_group(self.proc)
            else:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=60)
        self.proc = None

    def alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError("dagster-daemon exited: " + self.log.read_text()[-3000:])


def wait_for(condition, timeout: float, what: str, daemon: Daemon | None = None, every: float = 1.0):
    """Poll `condition` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon is not None:
            daemon.alive()
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def sensor_ticks(instance, name: str = "scene_arrivals") -> list:
    states = [s for s in instance.all_instigator_state() if s.name == name]
    if not states:
        return []
    return list(instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id))


def finished_ticks(instance, name: str = "scene_arrivals") -> list:
    """The sensor's ticks that have ended. A tick is recorded (STARTED) before its evaluation reads
    the clock, and a first tick watches from that clock on: wait for this before writing arrivals."""
    from dagster._core.scheduler.instigation import TickStatus

    return [t for t in sensor_ticks(instance, name) if t.status != TickStatus.STARTED]


def tick_log_lines(instance, ticks) -> list[str]:
    from dagster._core.definitions.instigation_logger import get_instigation_log_records

    lines = []
    for tick in ticks:
        if tick.log_key:
            lines += [r.get("msg", "") for r in get_instigation_log_records(instance, tick.log_key)]
    return lines
