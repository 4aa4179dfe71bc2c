"""What the UI shows when a service of a deployment goes away, read in a real browser, and that it recovers
without losing a run when the service returns (deploy/README.md, "When a service is away").

The deployment's shape on this host, as processes (host_stack.py): PostgreSQL, here reached through a relay
that can go silent (a database whose packets are dropped), the code server, the deployment's webserver
(Dagster's, with geo_assets/webserver/'s messages) and the daemon. test_service_messages.py stops PostgreSQL
itself and starts without a daemon.
"""

from __future__ import annotations

import re
import time

import pytest
import requests
from host_stack import DATE, REGION, host_stack, until_shown

from devtools.dagster_dev import graphql
from devtools.postgres import postgres_server
from devtools.relay import Relay
from geo_assets.cli.graphql import DAEMON_SILENT_S
from geo_assets.webserver.middleware import BANNER_ID

pytestmark = pytest.mark.slow  # minutes of services stopped and started: make test's second phase


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The deployment, serving; named `server` so tests/ui/conftest.py's browser starts after it."""
    with postgres_server() as pg:
        relay = Relay((pg.host, pg.port))
        try:
            with host_stack(tmp_path_factory.mktemp("services"), pg, db_port=relay.port) as deployment:
                deployment.relay, deployment.pg = relay, pg
                yield deployment
        finally:
            relay.close()


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
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:] + server.logs()


def test_a_launch_while_the_code_server_restarts_waits_for_it_and_launches(server):
    """A restart is not a refusal: `geo-assets launch` waits for a code server that does not answer, up to
    GEO_ASSETS_CODE_SERVER_WAIT_S, says so once, and launches when it is back."""
    before = _partition_runs(server)
    server.stop("code-server")
    launching = server.launching("--wait", GEO_ASSETS_CODE_SERVER_WAIT_S="300")
    said = launching.stdout.readline()
    assert said.startswith("geo-assets: the code location geo_assets does not answer"), said + launching.stderr.read()
    assert said.rstrip().endswith("waiting up to 300 s for its code server"), said
    server.start("code-server")
    stdout, stderr = launching.communicate(timeout=600)
    assert launching.returncode == 0 and "SUCCESS" in stdout, stdout[-3000:] + stderr[-3000:] + server.logs()
    assert "waiting up to" not in stdout + stderr, "said once"
    assert len(_partition_runs(server) - before) == 1, "one launch, one run"


def _partition_runs(server) -> set[str]:
    query = (
        'query($v: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $v}]}) '
        "{ ... on Runs { results { runId } } } }"
    )
    runs = graphql(server.graphql, query, {"v": f"{DATE}|{REGION}"})["runsOrError"]["results"]
    return {r["runId"] for r in runs}


def test_a_stopped_daemon_gets_a_banner_and_its_queued_run_completes_when_back(server, page, shoot):
    """Dagster calls a daemon unhealthy only when its heartbeat is 30 minutes old: its daemon page still says
    Running and the run waits as Queued. Once the daemon has been silent for DAEMON_SILENT_S (heartbeats
    come every 30 s), the page says so in a banner, which goes by itself when the daemon reports again."""
    server.stop("daemon")
    stopped = time.monotonic()
    proc = server.launch()
    assert proc.returncode == 0, proc.stderr
    (run_id,) = [w.split()[0] for w in proc.stdout.split("launched run ")[1:]]
    page.goto(f"{server.base}/health")
    page.get_by_text("Run queue", exact=True).first.wait_for()
    page.get_by_text("Running", exact=True).first.wait_for()
    assert page.get_by_text("Not running").count() == 0

    banner = page.locator(f"#{BANNER_ID}")
    deadline = stopped + DAEMON_SILENT_S + 180
    while True:  # the last heartbeat may be up to 30 s older than the stop
        page.goto(f"{server.base}/runs/{run_id}")
        page.get_by_text("Queued").first.wait_for()
        if banner.count():
            break
        assert time.monotonic() < deadline, "no banner while the daemon is stopped"
        time.sleep(10)
    assert re.fullmatch(
        r"The Dagster daemon has not reported for \d+ s: queued runs will not start, sensors and "
        r"schedules do not tick\.",
        banner.inner_text(),
    ), banner.inner_text()
    shoot("daemon-stopped-run-queued")

    server.start("daemon")
    banner.wait_for(state="detached", timeout=300_000)  # the open page asks again every few seconds
    deadline = time.monotonic() + 600
    while (
        status := graphql(
            server.graphql, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
        )["runOrError"]["status"]
    ) not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status == "SUCCESS"


def test_a_database_that_does_not_answer_gets_one_message_naming_it_and_the_runs_are_back_with_it(server, page, shoot):
    """Dagster's webserver reads the run storage to serve any page: with the database silent it answers
    "Internal Server Error". The deployment's webserver answers 503 with one line naming the database
    (the address the webserver uses: the relay's), on the page and to GraphQL; nothing is lost."""
    before = graphql(server.graphql, "{ runsOrError { ... on Runs { results { runId } } } }")["runsOrError"]["results"]
    server.relay.silence()
    response = page.goto(f"{server.base}/runs")
    message = page.locator("h1").inner_text()
    assert response.status == 503, (response.status, page.inner_text("body")[:1000])
    where = f"PostgreSQL at 127.0.0.1:{server.relay.port}, database {server.pg.db}"
    assert (
        message.startswith(f"The Dagster webserver cannot reach its database, {where}: ")
        and "timeout expired" in message
    )
    assert server.pg.password not in page.content()
    shoot("database-silent")
    answer = requests.post(server.graphql, json={"query": "{ version }"}, timeout=60)
    assert answer.status_code == 503 and answer.json()["errors"][0]["message"] == message, answer.text[:1000]

    server.relay.resume()
    # The runs list is back, the runs from before in it (the UI shows a run id's first 8 characters).
    until_shown(page, f"{server.base}/runs", before[0]["runId"][:8] if before else "No runs found")
    after = graphql(server.graphql, "{ runsOrError { ... on Runs { results { runId } } } }")["runsOrError"]["results"]
    assert {r["runId"] for r in before} <= {r["runId"] for r in after}
    shoot("database-back")
