"""What the Dagster UI (webserver 1.13.27) shows when a service of a deployment goes away, read in a real
browser, and that it recovers without losing a run when the service returns (deploy/README.md, "When a
service is away").

The deployment's shape on this host, as processes: PostgreSQL (reached through a relay that can go
silent, as a database whose packets are dropped), `dagster code-server start`, `dagster-webserver` and
`dagster-daemon` on deploy/compose/workspace.yaml, the instance's storage block taken from
deploy/compose/dagster.yaml (runs are processes of the daemon here, not containers).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from devtools.dagster_dev import BIN, ROOT, free_port, graphql, stop_group
from devtools.postgres import postgres_server
from devtools.relay import Relay
from geo_assets.graphql import DagsterClient, LaunchError

pytestmark = pytest.mark.slow  # minutes of services stopped and started: make test's second phase

REGION, DATE = "synth-holdout", "2024-06-01"
WORKSPACE = "deploy/compose/workspace.yaml"


@dataclass
class Deployment:
    base: str  # the UI
    graphql: str
    env: dict[str, str]
    relay: Relay
    tmp: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def commands(self) -> dict[str, list]:
        return {
            "code-server": [BIN / "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", self.env["GEO_ASSETS_GRPC_PORT"],
                            "-m", "geo_assets.definitions"],
            "webserver": [BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", self.base.rsplit(":", 1)[1], "-w", WORKSPACE],
            "daemon": [BIN / "dagster-daemon", "run", "-w", WORKSPACE],
        }

    def start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(self.commands()[name], cwd=ROOT, env=self.env, stdout=open(self.tmp / f"{name}.log", "a"),
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, name: str) -> None:
        stop_group(self.procs.pop(name), grace=30)

    def launch(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([BIN / "geo-assets", "launch", "--url", self.graphql, "--region", REGION, "--date", DATE,
                               "--select", "imagery_tiles", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=600)

    def ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                DagsterClient(self.graphql).ready()
                return
            except LaunchError as exc:
                assert time.monotonic() < deadline, f"{exc}\n" + (self.tmp / "webserver.log").read_text()[-3000:]
                time.sleep(2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The deployment above, serving; named `server` so tests/ui/conftest.py's browser starts after it."""
    tmp = tmp_path_factory.mktemp("services")
    home = tmp / "home"
    home.mkdir()
    instance = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    instance["storage"] = yaml.safe_load((ROOT / "deploy/compose/dagster.yaml").read_text())["storage"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    with postgres_server() as pg:
        relay = Relay((pg.host, pg.port))
        port = free_port()
        env = {**os.environ, **pg.env(), "DAGSTER_PG_PORT": str(relay.port), "DAGSTER_HOME": str(home),
               "GEO_ASSETS_GRPC_PORT": str(free_port()), "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri()}
        env.pop("GEO_ASSETS_PROFILE", None)
        subprocess.run([BIN / "geo-assets", "init"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
        deployment = Deployment(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/graphql", env, relay, tmp)
        try:
            for name in ("code-server", "webserver", "daemon"):
                deployment.start(name)
            deployment.ready()
            graphql(deployment.graphql, "mutation { setNuxSeen }")  # the welcome dialog would cover the page
            yield deployment
        finally:
            relay.close()
            for name in list(deployment.procs):
                deployment.stop(name)


def until_shown(page, url: str, text: str, timeout: float = 120) -> None:
    """Load `url` until the page shows `text` (the webserver notices a change within seconds, not at once)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        try:
            page.get_by_text(text, exact=True).first.wait_for(timeout=10_000)
            return
        except Exception:
            assert time.monotonic() < deadline, f"{url} did not show {text!r} in {timeout:.0f} s: {page.inner_text('body')[:2000]}"


def test_a_stopped_code_server_shows_as_failed_with_its_error_and_comes_back(server, page, shoot):
    server.stop("code-server")
    until_shown(page, f"{server.base}/locations", "Failed")
    page.get_by_role("button", name="View error").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Could not reach user code server").first.wait_for()
    shoot("code-server-stopped")
    assert "DagsterUserCodeUnreachableError" in dialog.inner_text()

    server.start("code-server")
    until_shown(page, f"{server.base}/locations", "Loaded", timeout=180)
    assert page.get_by_text("Failed", exact=True).count() == 0
    proc = server.launch("--wait")
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_a_stopped_daemon_still_shows_running_and_its_queued_run_completes_when_back(server, page, shoot):
    """Dagster calls a daemon unhealthy only when its heartbeat is 30 minutes old: until then the UI's
    daemon page says Running (with the heartbeat's age) and the run waits as Queued."""
    server.stop("daemon")
    proc = server.launch()
    assert proc.returncode == 0, proc.stderr
    (run_id,) = [w.split()[0] for w in proc.stdout.split("launched run ")[1:]]
    page.goto(f"{server.base}/health")
    page.get_by_text("Run queue", exact=True).first.wait_for()
    page.get_by_text("Running", exact=True).first.wait_for()
    assert page.get_by_text("Not running").count() == 0
    page.goto(f"{server.base}/runs/{run_id}")
    page.get_by_text("Queued").first.wait_for()
    shoot("daemon-stopped-run-queued")

    server.start("daemon")
    deadline = time.monotonic() + 600
    while (status := graphql(server.graphql, 'query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }',
                             {"id": run_id})["runOrError"]["status"]) not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status == "SUCCESS"


def test_a_database_that_does_not_answer_fails_every_page_and_the_runs_are_back_with_it(server, page, shoot):
    """The webserver reads the run storage to serve any page: with the database silent, every page is
    "Internal Server Error" (its log names the database); nothing is lost when it answers again."""
    before = graphql(server.graphql, "{ runsOrError { ... on Runs { results { runId } } } }")["runsOrError"]["results"]
    server.relay.silence()
    for _ in range(2):  # the first cuts the pooled connection; the second waits on connect timeouts
        response = page.goto(f"{server.base}/runs")
        assert response.status == 500 and page.inner_text("body").strip() == "Internal Server Error"
    shoot("database-silent")
    assert "timeout expired" in (server.tmp / "webserver.log").read_text()

    server.relay.resume()
    # The runs list is back, the runs from before in it (the UI shows a run id's first 8 characters).
    until_shown(page, f"{server.base}/runs", before[0]["runId"][:8] if before else "No runs found")
    after = graphql(server.graphql, "{ runsOrError { ... on Runs { results { runId } } } }")["runsOrError"]["results"]
    assert {r["runId"] for r in before} <= {r["runId"] for r in after}
    shoot("database-back")
