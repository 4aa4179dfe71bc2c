"""A database that does not answer (its packets dropped) gives `geo-assets launch`, `backfill` and `train`
one line naming the database, exit status 2 and no traceback, and the command returns: the instance's
connect_timeout (deploy/*/dagster.yaml) makes the webserver's connections fail instead of waiting for the
kernel's minutes.

The deployment's webserver (`geo-assets-webserver`, what deploy/compose runs: its line says where the
database is) and Dagster's plain `dagster-webserver` serve the code location on deploy/compose/dagster.yaml,
copied verbatim, whose PostgreSQL is a real server reached through a TCP relay on 127.0.0.1. Once the relay
goes silent it still accepts connections but never answers and forwards nothing: what a client sees of a
database whose packets are dropped. When the relay forwards again, launching works again.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from devtools.dagster_dev import BIN, ROOT, free_port, stop_group
from devtools.relay import Relay
from geo_assets.cli.graphql import DagsterClient, LaunchError

pytestmark = pytest.mark.slow  # minutes of services stopped and started: make test's second phase

REGION, DATE = "synth-holdout", "2024-06-01"


@pytest.fixture(params=["geo-assets-webserver", "dagster-webserver"])
def webserver(request, tmp_path, fresh_db):
    """A webserver on the compose instance yaml, its database behind a Relay; yields (url, relay, env, where):
    `where` is the database as the deployment's webserver names it (None for Dagster's own)."""
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
        [BIN / request.param, "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
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
        named = request.param == "geo-assets-webserver"
        yield url, relay, env, (f"PostgreSQL at 127.0.0.1:{relay.port}, database {fresh_db.db}" if named else None)
    finally:
        relay.close()
        stop_group(proc, grace=30)


# Every command that launches over GraphQL, asked the same.
COMMANDS = {
    "launch": ["launch", "--region", REGION, "--date", DATE, "--select", "imagery_tiles"],
    "backfill": ["backfill", "--region", REGION, "--from", DATE, "--to", DATE, "--select", "imagery_tiles"],
    "train": ["train", "landcover-unet", "--regions", REGION, "--config", '{"epochs": 1}'],
}


def cli(command: str, url: str, env: dict) -> subprocess.CompletedProcess:
    # The timeout only detects a hang: without a connect timeout the command waits far longer.
    return subprocess.run(
        [BIN / "geo-assets", *COMMANDS[command], "--url", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )


def test_a_database_that_does_not_answer_gives_the_cli_one_line_naming_it(webserver):
    url, relay, env, where = webserver
    relay.silence()
    for command in COMMANDS:
        t0 = time.monotonic()
        proc = cli(command, url, env)
        print(f"geo-assets {command} returned {time.monotonic() - t0:.0f} s after the database went silent")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        named = f", {where}" if where else ""
        start = f"geo-assets: error: the Dagster webserver at {url} cannot reach its database{named}: "
        assert lines[0].startswith(start), lines[0]
        assert "timeout expired" in lines[0] and "launched " not in proc.stdout, lines[0]

    relay.resume()  # the database answers again: the next launch is taken
    deadline = time.monotonic() + 120
    while (proc := cli("launch", url, env)).returncode == 2 and time.monotonic() < deadline:
        time.sleep(2)
    assert proc.returncode == 0 and "launched run" in proc.stdout, proc.stdout + proc.stderr
