"""The deployment on one host (deploy/compose/), run with the commands deploy/README.md gives, every one of
them, as written and in its order: PostgreSQL, the code server, two webservers, the daemon and the map
server as containers, each run launched as a container of the same image, writing to the test suite's
S3 server. The README's tiny model is trained by runs launched into the stack; its predictions equal
the embedded default's pixel for pixel and the map server serves them; every service listens on
127.0.0.1 only; the queue and the run history outlive the daemon and the database container; a run
whose container dies is marked failed; a missing code server or database gives the CLI one clear message."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from stack_world import TRAIN

from devtools import containers
from devtools.demo_cloud import compare
from devtools.emulators import free_port
from devtools.emulators.s3 import seaweedfs
from geo_assets.cli.graphql import DAEMON_SILENT_S, DagsterClient

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORLD = Path(__file__).with_name("stack_world.py")
COMPOSE = "deploy/compose/docker-compose.yml"
BUCKET, MODEL, REGION, DATE = "geo-assets-stack", "landcover-unet", "synth-holdout", "2024-06-01"
ACCESS_KEY, SECRET = "geo-assets-stack-key", "stack-" + secrets.token_hex(8)
MAP_KEY, MAP_SECRET = "geo-assets-stack-map-key", "map-" + secrets.token_hex(8)  # read and list only


def readme_commands() -> list[str]:
    """The bash block of deploy/README.md's "Try the deployment on one machine", one command per line
    (continuations joined, comments dropped)."""
    readme = (ROOT / "deploy/README.md").read_text()
    section = readme.split("## Try the deployment on one machine", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = block.replace("\\\n", " ").splitlines()
    return [re.sub(r"\s+", " ", line.split("  #", 1)[0]).strip() for line in lines if line.strip()]


ASSIGNMENT = re.compile(r"^(\w+)=\$\(")  # `VERSION=$(...)`: its value is kept for the commands after it


@dataclass
class Stack:
    env: dict[str, str]  # the host's: the README's variables, free ports, this test's compose project
    web: str  # the writable webserver's GraphQL endpoint
    commands: list[str]
    tmp: Path
    ran: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)  # the README's commands run

    def sh(self, command: str, *, timeout: float = 600, check: bool = True, **env) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, env={**self.env, **env}, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.sh(f"docker-compose -f {COMPOSE} " + " ".join(args), check=check, timeout=timeout)

    def command(self, start: str) -> str:
        (found,) = [c for c in self.commands if c.startswith(start)]
        return found

    def readme(self, command: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """One command of the README's block, as written; an assignment's value goes into the
        environment of the commands after it, as in the user's shell."""
        name = ASSIGNMENT.match(command)
        proc = self.sh(command + (f'\nprintf "\\n%s" "${name[1]}"' if name else ""), timeout=timeout)
        if name:
            self.env[name[1]] = proc.stdout.rsplit("\n", 1)[-1]
            assert self.env[name[1]], f"{command} set no {name[1]}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        self.ran[command] = proc
        return proc

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(self.web, json={"query": query, "variables": variables or {}}, timeout=30)
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def runs(self) -> dict[str, str]:
        """run id -> status, every run the instance holds."""
        data = self.graphql("{ runsOrError { ... on Runs { results { runId status } } } }")
        return {r["runId"]: r["status"] for r in data["runsOrError"]["results"]}

    def wait_status(self, run_id: str, statuses: tuple[str, ...], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.runs().get(run_id)
            if status in statuses:
                return status
            time.sleep(1)
        raise AssertionError(f"run {run_id} is {self.runs().get(run_id)} after {timeout:.0f} s, not {statuses}")

    def launch(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        """`geo-assets launch` on the host against the stack's webserver."""
        return self.sh(
            " ".join(["geo-assets", "launch", "--url", self.web, "--region", REGION, "--date", DATE, *args]),
            check=check,
            GEO_ASSETS_PROFILE="aws",
            **env,
        )


def wait_for_location(web: str, timeout: float = 300) -> None:
    """Until the webserver answers GraphQL and has loaded the geo_assets location from the code server."""
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            entries = requests.post(web, json={"query": query}, timeout=10).json()["data"]["workspaceOrError"][
                "locationEntries"
            ]
            last = {e["name"]: (e["locationOrLoadError"] or {}).get("__typename") for e in entries}
            if last.get("geo_assets") == "RepositoryLocation":
                return
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise AssertionError(f"{web} did not serve the geo_assets location within {timeout:.0f} s (last: {last})")


def host_world(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(WORLD), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    # The map's keys may only read and list the bucket (deploy/README: MAP_AWS_*).
    with seaweedfs(
        tmp_path_factory.mktemp("seaweedfs"), [BUCKET], ACCESS_KEY, SECRET, readers={MAP_KEY: MAP_SECRET}
    ) as server:
        yield server


@pytest.fixture(scope="module")
def stack_image(request) -> str:
    """The image the stack runs: GEO_ASSETS_IMAGE when set (an image already built, e.g. from a worktree),
    else geo-assets:cpu built from this checkout by the README's first command, run as written."""
    image = os.environ.get("GEO_ASSETS_IMAGE")
    request.getfixturevalue("engine")
    if not image:
        image = containers.APP_IMAGE
        first = readme_commands()[0]
        proc = subprocess.run(
            ["bash", "-c", first],
            cwd=ROOT,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=3600,
        )
        assert proc.returncode == 0 and proc.stdout.strip().endswith(image), (
            first,
            proc.stdout[-2000:],
            proc.stderr[-3000:],
        )
    assert containers.image_exists(image), f"{image} names no image"
    return image


@pytest.fixture(scope="module")
def stack(stack_image, s3_server, tmp_path_factory) -> Stack:
    containers.debian_image()  # the PostgreSQL image's base
    tmp = tmp_path_factory.mktemp("stack")
    web_port, map_port = free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "COMPOSE_PROJECT_NAME": f"stack-{uuid.uuid4().hex[:8]}",
        "GEO_ASSETS_IMAGE": stack_image,
        # The README's exports, with this test's values.
        "GEO_ASSETS_STORAGE_ROOT": f"s3://{BUCKET}/stack",
        "GEO_ASSETS_LOG_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
        "MAP_AWS_ACCESS_KEY_ID": MAP_KEY,
        "MAP_AWS_SECRET_ACCESS_KEY": MAP_SECRET,
        "DAGSTER_PG_PASSWORD": "pg-" + secrets.token_hex(8),
        "GEO_ASSETS_PROFILE": "aws",
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        # Free ports, so two test workers (or a stack already running) never collide.
        "DAGSTER_PG_PORT": str(free_port()),
        "GEO_ASSETS_GRPC_PORT": str(free_port()),
        "GEO_ASSETS_WEBSERVER_PORT": str(web_port),
        "GEO_ASSETS_READ_ONLY_PORT": str(free_port()),
        "GEO_ASSETS_MAP_PORT": str(map_port),
        "GEO_ASSETS_MAP_URL": f"http://127.0.0.1:{map_port}",  # materialisations' links: this stack's map
    }
    env.pop("DAGSTER_HOME", None)
    commands = readme_commands()
    exported = set(re.findall(r"(\w+)=", next(c for c in commands if c.startswith("export "))))
    assert exported <= env.keys(), exported - env.keys()
    stack = Stack(env, f"http://127.0.0.1:{web_port}/graphql", commands, tmp)
    stack.ran[commands[0]] = None  # the image: the stack_image fixture ran it, or was given one built already
    try:
        yield stack
    finally:
        # The README's down (it keeps the database's volume), then this test's volume and the run containers
        # the launcher left: those whose environment names this stack's database port.
        down = stack.sh(stack.command(f"docker-compose -f {COMPOSE} down"), check=False)
        stack.ran[stack.command(f"docker-compose -f {COMPOSE} down")] = down
        stack.compose("down", "-v", "--remove-orphans", check=False)
        ours = f"DAGSTER_PG_PORT={env['DAGSTER_PG_PORT']}"
        for container in stack.sh("docker ps -aq --filter label=dagster/run_id", check=False).stdout.split():
            if ours in stack.sh(f"docker inspect --format '{{{{json .Config.Env}}}}' {container}", check=False).stdout:
                stack.sh(f"docker rm -f {container}", check=False)
    assert down.returncode == 0, down.stderr[-3000:]
    if stack.ran.get(stack.command(f"docker-compose -f {COMPOSE} up -d")):
        # Every command of the README's block ran (the export's variables are the environment above).
        skipped = [c for c in commands if c not in stack.ran and not c.startswith("export ")]
        assert not skipped, f"the README's commands not run: {skipped}"


@pytest.fixture(scope="module")
def up(stack) -> Stack:
    """The README's commands from `up -d` to the map link, as written and in their order: the stack up, the
    imagery cut, the model trained and its prediction launched in runs of their own containers."""
    up_d = stack.command(f"docker-compose -f {COMPOSE} up -d")
    down = stack.command(f"docker-compose -f {COMPOSE} down")
    for command in stack.commands[stack.commands.index(up_d) : stack.commands.index(down)]:
        t0 = time.monotonic()
        stack.readme(command)
        if command == up_d:
            wait_for_location(stack.web)
        print(f"{time.monotonic() - t0:5.0f} s  {command[:100]}")
    return stack


def run_image(stack: Stack, run_id: str) -> str:
    tags = stack.graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }", {"id": run_id}
    )["runOrError"]["tags"]
    return {t["key"]: t["value"] for t in tags}["dagster/image"]


def test_a_prediction_launched_in_the_stack_equals_the_embedded_defaults(up, tmp_path):
    command = up.command("geo-assets train ")
    (config,) = re.findall(r"--config '(.*?)'", command)
    assert json.loads(config) == TRAIN  # the model the host trains below
    train = up.ran[command].stdout
    training = re.findall(r"launched run ([0-9a-f-]{36}) \(training_set, trained_model of", train)
    assert len(training) == 1 and f"run {training[0]}: SUCCESS" in train, train[-3000:]
    assert run_image(up, training[0]) == up.env["GEO_ASSETS_IMAGE"]  # trained in its own container

    launches = [c for c in up.commands if c.startswith("geo-assets launch --wait")]
    proc = up.ran[launches[-1]]  # the README's prediction
    assert "$VERSION" in launches[-1]
    assert re.search(r"run [0-9a-f-]{36}: SUCCESS", proc.stdout), proc.stdout[-3000:]
    (run_id,) = re.findall(r"launched run ([0-9a-f-]{36})", proc.stdout)
    assert "materialised predictions" in proc.stdout
    assert run_image(up, run_id) == up.env["GEO_ASSETS_IMAGE"]  # its own container

    # The same prediction on the embedded default: local files, SQLite, this host's processes.
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    local = {"GEO_ASSETS_PROFILE": "local", "GEO_ASSETS_STORAGE_ROOT": (tmp_path / "storage").as_uri()}
    env = {**os.environ, **local, "DAGSTER_HOME": str(home)}
    subprocess.run([BIN / "geo-assets", "init"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    version = json.loads(host_world(env, "train").splitlines()[-1])["version"]
    assert version == up.env["VERSION"]  # the same model, trained from the same inputs
    host_world(env, "predict", version)

    aws = {
        k: up.env[k]
        for k in (
            "GEO_ASSETS_STORAGE_ROOT",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        )
    }
    ((region, date, tiles, same),) = compare({"local": local, "aws": aws}, [(MODEL, REGION, DATE)])
    assert tiles == 16 and same


def test_the_map_service_serves_the_prediction_read_only(up):
    link = up.ran[up.command("GEO_ASSETS_MAP_URL=")].stdout.strip().splitlines()[-1]
    base = f"http://127.0.0.1:{up.env['GEO_ASSETS_MAP_PORT']}"
    assert link.startswith(f"{base}/map?") and urlencode({"version": up.env["VERSION"]}) in link, link
    page = requests.get(link, timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"], (page.status_code, page.text[:300])
    query = {"region": REGION, "date": DATE, "model": MODEL, "version": up.env["VERSION"]}
    view = requests.get(f"{base}/api/view", params=query, timeout=30)
    assert view.status_code == 200, view.text[:500]
    tiles = view.json()["predictions"]["tiles"]
    assert up.env["VERSION"] in tiles, tiles
    # Read-only: no route takes a write.
    for method in ("POST", "PUT", "DELETE"):
        assert requests.request(method, f"{base}/api/view", params=query, timeout=30).status_code == 405, method


def listening(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port` in this network namespace (the host's:
    every container of the stack runs on it)."""
    found = set()
    for table, size in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                ip = ipaddress.ip_address(socket.inet_ntop(socket.AF_INET if size == 8 else socket.AF_INET6, words))
                found.add(str(getattr(ip, "ipv4_mapped", None) or ip))  # gRPC's [::ffff:127.0.0.1] is 127.0.0.1
    return found


def test_every_service_listens_on_loopback_only(up):
    """Whoever reaches a webserver, the code server or the database can launch runs or read secrets, and the
    map server reads the bucket with the stack's keys: on the host's network each listens on 127.0.0.1 only."""
    ports = {
        name: int(up.env[name])
        for name in (
            "DAGSTER_PG_PORT",
            "GEO_ASSETS_GRPC_PORT",
            "GEO_ASSETS_WEBSERVER_PORT",
            "GEO_ASSETS_READ_ONLY_PORT",
            "GEO_ASSETS_MAP_PORT",
        )
    }
    addresses = {name: listening(port) for name, port in ports.items()}
    assert all(found == {"127.0.0.1"} for found in addresses.values()), addresses


def launched_id(proc: subprocess.CompletedProcess) -> str:
    (run_id,) = re.findall(r"launched run ([0-9a-f-]{36})", proc.stdout)
    return run_id


def test_the_queue_and_the_run_history_outlive_the_daemon_and_the_database(up):
    if not any(s == "SUCCESS" for s in up.runs().values()):  # history to keep, when run alone
        up.launch("--select", "imagery_tiles", "--wait")
    history = {i: s for i, s in up.runs().items() if s in ("SUCCESS", "FAILURE")}
    up.compose("stop", "daemon")
    stopped = time.monotonic()
    first = launched_id(up.launch("--select", "imagery_tiles"))
    assert up.runs()[first] == "QUEUED"  # no daemon: nothing dequeues it

    # A new database container on the same volume.
    up.compose("rm", "-fsv", "postgres")
    up.compose("up", "-d", "postgres")
    deadline = time.monotonic() + 120
    while True:
        try:
            runs = up.runs()
            break
        except (requests.RequestException, AssertionError, ValueError):
            assert time.monotonic() < deadline, "the webserver did not read the database again within 120 s"
            time.sleep(1)
    assert runs[first] == "QUEUED" and {i: runs[i] for i in history} == history

    # Once the daemon's heartbeat is older than the CLI tolerates, a launch says the run will wait.
    time.sleep(max(0.0, DAEMON_SILENT_S + 5 - (time.monotonic() - stopped)))
    queued = up.launch("--select", "imagery_tiles")
    assert "geo-assets: warning: the Dagster daemon of the webserver" in queued.stderr, queued.stderr
    second = launched_id(queued)
    assert up.runs()[second] == "QUEUED"
    up.compose("start", "daemon")
    for run_id in (first, second):
        assert up.wait_status(run_id, ("SUCCESS", "FAILURE", "CANCELED"), 600) == "SUCCESS"


LAUNCH_TRAINING = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def test_a_run_whose_container_is_killed_mid_step_is_marked_failed(up):
    # A training long enough to be killed in its step, launched over GraphQL like the UI's launchpad.
    ops = {
        "training_set": {"config": {"regions": [REGION]}},
        "trained_model": {
            "config": {
                "architecture": "fcn",
                "epochs": 500,
                "chips_per_epoch": 64,
                "chip_size": 64,
                "batch_size": 8,
                "hyperparameters": {"hidden_channels": 8},
            }
        },
    }
    params = {
        "selector": {
            "repositoryLocationName": "geo_assets",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["training_set"]}, {"path": ["trained_model"]}],
        },
        "runConfigData": {"ops": ops},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": MODEL}]},
    }
    DagsterClient(up.web).ready()  # as `geo-assets launch` does: each pooled database connection answers
    launched = up.graphql(LAUNCH_TRAINING, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    query = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } }
                                 logsForRun(runId: $id) { ... on EventConnection { events {
                                   __typename ... on MessageEvent { message stepKey eventType } } } } }"""

    def state():
        data = up.graphql(query, {"id": run_id})
        return data["runOrError"], data["logsForRun"]["events"]

    deadline = time.monotonic() + 600
    while not any(e.get("eventType") == "STEP_START" and e.get("stepKey") == "trained_model" for e in state()[1]):
        assert time.monotonic() < deadline and state()[0]["status"] in ("QUEUED", "STARTING", "STARTED"), state()
        time.sleep(1)
    run, _ = state()
    container = {t["key"]: t["value"] for t in run["tags"]}["docker/container_id"]
    up.sh(f"docker kill {container}")
    t0 = time.monotonic()
    assert up.wait_status(run_id, ("FAILURE", "SUCCESS", "CANCELED"), 120) == "FAILURE"
    print(f"the killed run was marked failed {time.monotonic() - t0:.0f} s after its container died")
    messages = "\n".join(e.get("message") or "" for e in state()[1])
    assert "Detected run worker status" in messages and "Container status is exited" in messages, messages[-3000:]


def until_launched(up: Stack, timeout: float = 180) -> subprocess.CompletedProcess:
    """`geo-assets launch --wait` of imagery_tiles, repeated until the stack takes it: a service back
    from a stop takes seconds to answer again."""
    deadline = time.monotonic() + timeout
    while True:
        proc = up.launch("--select", "imagery_tiles", "--wait", check=False)
        if proc.returncode != 2 or time.monotonic() > deadline:
            assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
            return proc
        time.sleep(3)


def one_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's refusal: exit 2, one line on stderr, no traceback, nothing launched."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geo-assets: error: "), proc.stderr
    assert "launched run" not in proc.stdout
    return lines[0]


def test_a_stopped_code_server_or_database_gives_one_clear_message_and_launches_work_when_back(up):
    up.compose("stop", "code-server")
    proc = up.launch("--select", "imagery_tiles", check=False, GEO_ASSETS_CODE_SERVER_WAIT_S="3")
    message = one_error(proc)
    assert "the code location geo_assets does not answer" in message and "code server is stopped" in message, message
    assert "(waited 3 s, GEO_ASSETS_CODE_SERVER_WAIT_S)" in message and "Could not reach user code server" in message
    assert "waiting up to 3 s for its code server" in proc.stdout, proc.stdout  # said once, on stdout
    up.compose("start", "code-server")
    until_launched(up)

    up.compose("stop", "postgres")
    message = one_error(up.launch("--select", "imagery_tiles", check=False))
    assert f"the Dagster webserver at {up.web} cannot reach its database" in message, message
    up.compose("start", "postgres")
    until_launched(up)
