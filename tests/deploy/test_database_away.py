"""A database that does not answer (its packets dropped) gives `geo-assets launch` one line naming the
database, and the command returns: the instance's connect_timeout (deploy/*/dagster.yaml) makes the
webserver's connections fail instead of waiting for the kernel's minutes.

A real `dagster-webserver` serves the code location on deploy/compose/dagster.yaml, copied verbatim,
whose PostgreSQL is a real server reached through a TCP relay on 127.0.0.1. Once the relay goes silent
it still accepts connections but never answers and forwards nothing: what a client sees of a database
whose packets are dropped. When the relay forwards again, launching works again.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from devtools.dagster_dev import BIN, ROOT, free_port, stop_group
from devtools.relay import Relay
from geo_assets.graphql import DagsterClient, LaunchError

pytestmark = pytest.mark.slow  # minutes of services stopped and started: make test's second phase

REGION, DATE = "synth-holdout", "2024-06-01"


@pytest.fixture
def webserver(tmp_path, fresh_db):
    """dagster-webserver on the compose instance yaml, its database behind a Relay; yields (url, relay, env)."""
    relay = Relay((fresh_db.host, fresh_db.port))
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "deploy/compose/dagster.yaml").read_text())
    env = {
        **os.environ,
        **fresh_db.env(),
        "DAGSTER_PG_PORT": str(relay.port),
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_STORAGE_ROOT": (tmp_path / "storage").as_uri(),
        "GEO_ASSETS_LOG_BUCKET": "logs",
        "AWS_ACCESS_KEY_ID": "unused",
        "AWS_SECRET_ACCESS_KEY": "unused",
        "AWS_REGION": "us-east-1",
    }
    env.pop("GEO_ASSETS_PROFILE", None)
    subprocess.run([BIN / "geo-assets", "init"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    port = free_port()
    log = tmp_path / "webserver.log"
    proc = subprocess.Popen(
        [BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 300
        while True:  # until it reads its database and serves the code location
            try:
                DagsterClient(url).ready()
                break
            except LaunchError as exc:
                assert time.monotonic() < deadline and proc.poll() is None, f"{exc}\n{log.read_text()[-3000:]}"
                time.sleep(1)
        yield url, relay, env
    finally:
        relay.close()
        stop_group(proc, grace=30)


def launch(url: str, env: dict) -> subprocess.CompletedProcess:
    # The timeout only detects a hang: without a connect timeout the command waits far longer.
    return subprocess.run(
        [BIN / "geo-assets", "launch", "--url", url, "--region", REGION, "--date", DATE, "--select", "imagery_tiles"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )


def test_a_database_that_does_not_answer_gives_launch_one_line_naming_it(webserver):
    url, relay, env = webserver
    relay.silence()
    t0 = time.monotonic()
    proc = launch(url, env)
    print(f"geo-assets launch returned {time.monotonic() - t0:.0f} s after the database went silent")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"geo-assets: error: the Dagster webserver at {url} cannot reach its database: "), lines[
        0
    ]
    assert "timeout expired" in lines[0] and "launched run" not in proc.stdout, lines[0]

    relay.resume()  # the database answers again: the next launch is taken
    deadline = time.monotonic() + 120
    while (proc := launch(url, env)).returncode == 2 and time.monotonic() < deadline:
        time.sleep(2)
    assert proc.returncode == 0 and "launched run" in proc.stdout, proc.stdout + proc.stderr
