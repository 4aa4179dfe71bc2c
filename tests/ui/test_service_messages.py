"""The deployment's webserver (geo_assets/webserver/) in a real browser: one clear message when the daemon
has never reported or PostgreSQL is stopped, gone by itself when the service is back, and a launch that
works then. The deployment's shape on this host as host_stack.py makes it, started without a daemon, its
PostgreSQL reached directly (stopped and started with pg_ctl, as a database host going down).
"""

from __future__ import annotations

import pytest
import requests
from host_stack import host_stack

from devtools.postgres import postgres_server
from geo_assets.webserver.middleware import BANNER_ID

pytestmark = pytest.mark.slow  # a deployment started, services stopped and started: minutes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The deployment without its daemon; named `server` so tests/ui/conftest.py's browser starts after it."""
    with postgres_server() as pg:
        with host_stack(tmp_path_factory.mktemp("messages"), pg, services=("code-server", "webserver")) as deployment:
            deployment.pg = pg
            yield deployment


def test_a_daemon_that_never_reported_gets_a_banner_that_goes_once_it_runs(server, page, shoot):
    page.goto(f"{server.base}/runs")
    banner = page.locator(f"#{BANNER_ID}")
    banner.wait_for()
    assert banner.inner_text() == (
        "The Dagster daemon has never reported: queued runs will not start, sensors and schedules do not tick."
    )
    page.get_by_text("No runs found", exact=True).wait_for()  # Dagster's page itself is whole beside it
    shoot("daemon-never-reported")

    server.start("daemon")
    banner.wait_for(state="detached", timeout=300_000)  # the open page asks again every few seconds
    page.reload()
    page.get_by_text("No runs found", exact=True).wait_for()
    assert page.locator(f"#{BANNER_ID}").count() == 0


def test_a_stopped_database_gets_one_message_naming_it_and_the_ui_and_launches_are_back_with_it(server, page, shoot):
    if "daemon" not in server.procs:  # run alone
        server.start("daemon")
    server.pg.stop()
    try:
        response = page.goto(f"{server.base}/runs")
        message = page.locator("h1").inner_text()
        assert response.status == 503, (response.status, page.inner_text("body")[:1000])
        where = f"PostgreSQL at 127.0.0.1:{server.pg.port}, database {server.pg.db}"
        assert message.startswith(f"The Dagster webserver cannot reach its database, {where}: "), message
        assert "Connection refused" in message and server.pg.password not in page.content()
        shoot("database-stopped")
        # Every GraphQL client, the UI's own requests included, gets the same line.
        answer = requests.post(server.graphql, json={"query": "{ version }"}, timeout=60)
        assert answer.status_code == 503 and answer.json()["errors"][0]["message"] == message, answer.text[:1000]
        # ... and `geo-assets launch` still reads it as the database being away: one line, nothing launched.
        proc = server.launch()
        assert proc.returncode == 2 and "launched run" not in proc.stdout, proc.stdout + proc.stderr
        assert proc.stderr.strip() == (
            f"geo-assets: error: the Dagster webserver at {server.graphql} cannot reach its database, {where}: "
            f'connection to server at "127.0.0.1", port {server.pg.port} failed: Connection refused; Is the server '
            "running on that host and accepting TCP/IP connections?. Nothing was launched; start the database (its "
            "runs and history are kept) and launch again"
        ), proc.stderr
    finally:
        server.pg.start()
    # The message's page reloads itself: Dagster's page replaces it without a click.
    page.get_by_text("No runs found", exact=True).wait_for(timeout=120_000)
    assert page.locator("h1", has_text="cannot reach its database").count() == 0
    shoot("database-back")
    proc = server.launch("--wait")
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
