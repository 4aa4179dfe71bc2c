"""What `DagsterClient` sends when the code server does not answer a launch, against a scripted GraphQL
endpoint on 127.0.0.1 (a real HTTP server that answers as Dagster's webserver does in that state, which a
real webserver gives only in a window of seconds after a code server stops: tests/ui/test_services_away.py
covers the wait through the real stack). Asserted: the exact requests sent, the one waiting line, and
that a refused launch is asked again only of an instance that queues its runs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from geo_assets.cli.graphql import DagsterClient, LaunchError

UNREACHABLE = {
    "__typename": "PythonError",
    "message": "dagster._core.errors.DagsterUserCodeUnreachableError: Could not reach user code server. "
    "gRPC Error code: UNAVAILABLE",
    "causes": [],
}


class Webserver:
    """Answers Database and Ready queries as a webserver with the location loaded; LaunchRun with
    `refusals` in turn, then success."""

    def __init__(self, queued: bool, refusals: list[dict]):
        self.queued, self.refusals, self.sent, self.launches = queued, list(refusals), [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = outer.answer(body["query"], body.get("variables"))
                data = json.dumps({"data": answer}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/graphql"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, query: str, variables: dict | None) -> dict:
        name = query.split("(", 1)[0].split("{", 1)[0].split()[-1]
        self.sent.append(name)
        runs = {"__typename": "Runs", "results": []}
        if name == "Database":
            return {"runsOrError": runs}
        if name == "Ready":
            daemon = {"required": self.queued, "lastHeartbeatTime": 9e12}
            location = {"__typename": "RepositoryLocation"}
            return {
                "runsOrError": runs,
                "assetsOrError": {"__typename": "AssetConnection", "nodes": []},
                "instance": {"daemonHealth": {"daemonStatus": daemon}},
                "workspaceOrError": {
                    "__typename": "Workspace",
                    "locationEntries": [{"name": "geo_assets", "locationOrLoadError": location}],
                },
            }
        assert name == "LaunchRun", query
        self.launches.append(variables)
        if self.refusals:
            return {"launchRun": self.refusals.pop(0)}
        return {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": "r1"}}}


@pytest.fixture
def said():
    return []


def _launch(web: Webserver, said: list[str]) -> str:
    client = DagsterClient(web.url, say=said.append)
    client.ready()
    return client.launch_run(["imagery_tiles"], "2024-06-01|tiny-field", {}, {})


def test_a_refused_launch_of_a_queueing_instance_is_asked_again_until_the_code_server_answers(said, monkeypatch):
    monkeypatch.setenv("GEO_ASSETS_CODE_SERVER_WAIT_S", "30")
    web = Webserver(queued=True, refusals=[UNREACHABLE, UNREACHABLE])
    assert _launch(web, said) == "r1"
    assert web.sent == ["Database", "Ready", "LaunchRun", "LaunchRun", "LaunchRun"]
    assert web.launches[0] == web.launches[1] == web.launches[2]  # the same launch each time
    assert web.launches[0]["params"]["executionMetadata"]["tags"] == [
        {"key": "dagster/partition", "value": "2024-06-01|tiny-field"},
        {"key": "dagster/partition/date", "value": "2024-06-01"},
        {"key": "dagster/partition/region", "value": "tiny-field"},
    ]
    assert len(said) == 1 and said[0].endswith("waiting up to 30 s for its code server"), said


def test_the_wait_ends_at_the_setting_with_one_error_naming_the_cause(said, monkeypatch):
    monkeypatch.setenv("GEO_ASSETS_CODE_SERVER_WAIT_S", "3")
    web = Webserver(queued=True, refusals=[UNREACHABLE] * 100)
    with pytest.raises(LaunchError) as refused:
        _launch(web, said)
    message = str(refused.value)
    assert "(Could not reach user code server. gRPC Error code: UNAVAILABLE)" in message, message
    assert "(waited 3 s, GEO_ASSETS_CODE_SERVER_WAIT_S). Nothing was launched" in message, message
    assert 2 <= web.sent.count("LaunchRun") <= 3, web.sent  # at 0 s, 2 s and at the deadline, 3 s
    assert len(said) == 1


def test_an_instance_that_does_not_queue_is_asked_once_and_told_a_failed_run_may_be_left(said):
    web = Webserver(queued=False, refusals=[UNREACHABLE])
    with pytest.raises(LaunchError, match="the launch may have left a failed run; start it and launch again"):
        _launch(web, said)
    assert web.sent == ["Database", "Ready", "LaunchRun"] and said == []


def test_other_refusals_are_not_asked_again(said):
    invalid = {"__typename": "RunConfigValidationInvalid", "errors": [{"message": "bad config"}]}
    web = Webserver(queued=True, refusals=[invalid])
    with pytest.raises(LaunchError, match="launch refused \\(RunConfigValidationInvalid\\): bad config"):
        _launch(web, said)
    assert web.sent.count("LaunchRun") == 1 and said == []
