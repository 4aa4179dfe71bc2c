"""ECS for the Pipes tests: moto's ECS API in server mode, and a local container runner.

moto keeps tasks but runs nothing. Its server records every request as received (its recorder),
its state manager is told to keep tasks RUNNING until stopped, and `TaskRunner` stands in for the
ECS agent: devtools.clusters.EcsAgent runs each new task's container as a local process, and this
one also stops the task through the API when that process exits, as the agent reports a stopped
container, and terminates the process of a task stopped through the API.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.clusters import EcsAgent
from devtools.emulators import free_port, running, venv_binary, wait_for_http

RUN_TASK = "AmazonEC2ContainerServiceV20141113.RunTask"


@contextmanager
def moto_server(workdir: Path) -> Iterator[tuple[str, Path]]:
    """moto in server mode on 127.0.0.1, recording requests; yields (endpoint URL, recording file)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    recording = Path(workdir) / "moto-recording.jsonl"
    env = {"MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(recording)}
    with running(
        [venv_binary("moto_server", "moto[server]"), "-H", "127.0.0.1", "-p", str(port)],
        Path(workdir) / "moto.log",
        env=env,
        cwd=Path(workdir),
    ):
        wait_for_http(f"{url}/moto-api/", timeout=30)
        # Tasks stay RUNNING until StopTask (the default jumps straight to STOPPED on the first describe).
        transition = {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}
        request = urllib.request.Request(
            f"{url}/moto-api/state-manager/set-transition", data=json.dumps(transition).encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=10).read()
        yield url, recording


def recorded(recording: Path, target: str) -> list[dict]:
    """The bodies of the recorded requests to one ECS action, in order."""
    entries = [json.loads(line) for line in recording.read_text().splitlines() if line.strip()]
    return [
        json.loads(base64.b64decode(e["body"]) if e["body_encoded"] else e["body"])
        for e in entries
        if e["headers"].get("X-Amz-Target") == target
    ]


class TaskRunner(EcsAgent):
    """The project's stand-in ECS agent (devtools.clusters), plus what PipesECSClient relies on: the
    agent reports a task STOPPED once its container's process has exited, and stops the process of a
    task that StopTask stopped."""

    def __init__(self, endpoint_url: str, region: str, base_env: dict, workdir: Path):
        super().__init__(
            endpoint_url, region, base_env, dagster_home=str(Path(workdir) / "dagster-home"), workdir=Path(workdir)
        )
        self._stopped: set[str] = set()

    def __enter__(self) -> TaskRunner:
        for cluster in self.ecs.list_clusters()["clusterArns"]:  # tasks of earlier tests are not ours to run
            self.skip.update(self.ecs.list_tasks(cluster=cluster)["taskArns"])
        super().__enter__()
        self._reporter = threading.Thread(target=self._report_stopped, daemon=True)
        self._reporter.start()
        return self

    def _report_stopped(self) -> None:
        while not self._stop.wait(0.2):
            running = {arn: c for arn, c in list(self.tasks.items()) if arn not in self._stopped}
            for cluster in {c.spec["task"]["clusterArn"] for c in running.values()}:
                arns = [arn for arn, c in running.items() if c.spec["task"]["clusterArn"] == cluster]
                for task in self.ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]:
                    arn, container = task["taskArn"], running[task["taskArn"]]
                    if task["desiredStatus"] == "STOPPED":  # StopTask: SIGTERM, as `docker stop` sends it
                        self._stopped.add(arn)
                        if container.poll() is None:
                            container.proc.terminate()
                    elif container.poll() is not None:
                        self._stopped.add(arn)
                        self.ecs.stop_task(
                            cluster=cluster,
                            task=arn,
                            reason=f"Essential container in task exited ({container.returncode})",
                        )

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self._reporter.join(timeout=10)
