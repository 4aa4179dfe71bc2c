"""The deployment's shape on this host, as processes, for the UI tests of services going away:
`dagster code-server start`, the deployment's webserver (`python -m geo_assets.webserver`, what
deploy/compose runs as `geo-assets-webserver`) and `dagster-daemon` on deploy/compose/workspace.yaml,
the instance's storage block taken from deploy/compose/dagster.yaml (runs are processes of the daemon
here, not containers), its PostgreSQL a real server; or, with no server, the embedded default's SQLite.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devtools.dagster_dev import BIN, ROOT, free_port, graphql, stop_group
from devtools.postgres import Postgres
from geo_assets.cli.graphql import DagsterClient, LaunchError

REGION, DATE = "synth-holdout", "2024-06-01"
WORKSPACE = "deploy/compose/workspace.yaml"


@dataclass
class Deployment:
    base: str  # the UI
    graphql: str
    env: dict[str, str]
    tmp: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def commands(self) -> dict[str, list]:
        return {
            "code-server": [
                BIN / "dagster",
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                self.env["GEO_ASSETS_GRPC_PORT"],
                "-m",
                "geo_assets.definitions",
            ],
            "webserver": [
                BIN / "python",
                "-m",
                "geo_assets.webserver",
                "-h",
                "127.0.0.1",
                "-p",
                self.base.rsplit(":", 1)[1],
                "-w",
                WORKSPACE,
            ],
            "daemon": [BIN / "dagster-daemon", "run", "-w", WORKSPACE],
        }

    def start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(
            self.commands()[name],
            cwd=ROOT,
            env=self.env,
            stdout=open(self.tmp / f"{name}.log", "a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, name: str) -> None:
        stop_group(self.procs.pop(name), grace=30)

    def launching(self, *args: str, **env: str) -> subprocess.Popen:
        """`geo-assets launch` of imagery_tiles for one partition, started; `env` added to the stack's."""
        return subprocess.Popen(
            [BIN / "geo-assets", "launch", "--url", self.graphql, "--region", REGION, "--date", DATE]
            + ["--select", "imagery_tiles", *args],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def launch(self, *args: str) -> subprocess.CompletedProcess:
        proc = self.launching(*args)
        stdout, stderr = proc.communicate(timeout=600)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    def logs(self, chars: int = 3000) -> str:
        """The end of each service's log: what a failed test shows of the stack."""
        return "".join(
            f"\n--- {name}.log ---\n{(self.tmp / f'{name}.log').read_text(errors='replace')[-chars:]}"
            for name in ("code-server", "webserver", "daemon")
            if (self.tmp / f"{name}.log").exists()
        )

    def ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                DagsterClient(self.graphql).ready()
                return
            except LaunchError as exc:
                assert time.monotonic() < deadline, f"{exc}\n" + (self.tmp / "webserver.log").read_text()[-3000:]
                time.sleep(2)


@contextmanager
def host_stack(
    tmp: Path,
    pg: Postgres | None,
    db_port: int | None = None,
    services: tuple[str, ...] = ("code-server", "webserver", "daemon"),
    extra_env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """`services` serving on `pg` (reached on `db_port` when given: a relay in front of it), or with no `pg`
    on the embedded default's SQLite storage under the Dagster home; `extra_env` added to every service's
    environment (another profile, its store)."""
    home = tmp / "home"
    home.mkdir()
    instance = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    if pg is not None:
        instance["storage"] = yaml.safe_load((ROOT / "deploy/compose/dagster.yaml").read_text())["storage"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    port = free_port()
    env = {
        **os.environ,
        **(pg.env() if pg else {}),
        **({"DAGSTER_PG_PORT": str(db_port or pg.port)} if pg else {}),
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_GRPC_PORT": str(free_port()),
        "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri(),
    }
    env.pop("GEO_ASSETS_PROFILE", None)
    env.update(extra_env or {})
    subprocess.run([BIN / "geo-assets", "init"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    deployment = Deployment(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/graphql", env, tmp)
    try:
        for name in services:
            deployment.start(name)
        deployment.ready()
        graphql(deployment.graphql, "mutation { setNuxSeen }")  # the welcome dialog would cover the page
        yield deployment
    finally:
        # Clients before the server they call: a code server stopped first waits out the calls in flight.
        for name in sorted(deployment.procs, key=("daemon", "webserver", "code-server").index):
            deployment.stop(name)


def until_shown(page, url: str, text: str, timeout: float = 120) -> None:
    """Load `url` until the page shows `text` (the webserver notices a change within seconds, not at once).

    A page that reloads itself (the database page's refresh) can abort our navigation with net::ERR_ABORTED
    when both start together: that load is tried again like one that did not show `text` yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            page.goto(url)
            page.get_by_text(text, exact=True).first.wait_for(timeout=10_000)
            return
        except Exception:
            assert time.monotonic() < deadline, (
                f"{url} did not show {text!r} in {timeout:.0f} s: {page.inner_text('body')[:2000]}"
            )
