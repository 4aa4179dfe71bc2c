"""What the benchmarks of a database that goes away share: the compose stack's instance (deploy/compose's
dagster.yaml) on a real PostgreSQL (devtools.postgres) reached through a relay that can go silent
(devtools.relay), and a wait until a webserver serves it again."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.dagster_dev import BIN
from devtools.postgres import postgres_server
from devtools.relay import Relay
from geo_assets.cli.graphql import DagsterClient, LaunchError

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def compose_instance(prefix: str) -> Iterator[tuple[Relay, dict]]:
    """(the relay in front of the database, the environment of a process using the instance), after
    `geo-assets init`; the relay is closed on the way out."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, postgres_server() as pg:
        relay = Relay((pg.host, pg.port))
        try:
            home = Path(tmp) / "home"
            home.mkdir()
            (home / "dagster.yaml").write_text((REPO / "deploy/compose/dagster.yaml").read_text())
            env = {
                **os.environ,
                **pg.env(),
                "DAGSTER_PG_PORT": str(relay.port),
                "DAGSTER_HOME": str(home),
                "GEO_ASSETS_STORAGE_ROOT": (Path(tmp) / "storage").as_uri(),
                "GEO_ASSETS_LOG_BUCKET": "logs",
                "AWS_ACCESS_KEY_ID": "unused",
                "AWS_SECRET_ACCESS_KEY": "unused",
                "AWS_REGION": "us-east-1",
            }
            env.pop("GEO_ASSETS_PROFILE", None)
            subprocess.run([BIN / "geo-assets", "init"], cwd=REPO, env=env, check=True, capture_output=True)
            yield relay, env
        finally:
            relay.close()


def until_ready(url: str, timeout: float = 300) -> None:
    """Until the webserver at `url` reads its database and serves the code location."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            DagsterClient(url).ready()
            return
        except LaunchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
