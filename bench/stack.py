"""Benchmark: the deployment on one host (deploy/compose/): how long the stack takes to start, and a
GraphQL launch to its first step started when each run is its own container.

    .venv/bin/python -m bench.stack [--starts 3] [--repeats 5] [--quick]

Needs the Docker engine and the images (`python -m devtools.containers app`; GEO_ASSETS_IMAGE names
another image of the code location). The stack's store is a local S3 API server (SeaweedFS), as in the
stack test; every port is free-chosen and the compose project is this benchmark's own.

* start: `docker-compose up -d` until the webserver answers GraphQL with the geo_assets location loaded
  from the code server and the map server answers /healthz on its read-only keys (the PostgreSQL image
  already built; the database volume new each time).
* launch to STEP_START: `imagery_tiles` of a one-tile region launched with DagsterClient.launch_run, to
  the STEP_START event, split by the run's events as bench.launch does; here "run process" is the
  DockerRunLauncher creating and starting the run's container and Dagster loading the code location in it.

Results go to bench/results/stack.json and the section between the stack markers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.common import CODE_LOCATION, machine_info, publish
from bench.launch import PHASES, _stamps

MEASURES = ["bench/stack.py", "deploy/compose", "deploy/Dockerfile", *CODE_LOCATION]
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "stack.json"
COMPOSE = ["docker-compose", "-f", "deploy/compose/docker-compose.yml"]
BUCKET = "bench-stack"
MAP_KEY = "bench-stack-map"
REGION = ("bench-stack", "400000", "5120000", "402560", "5122560")  # one tile of 256 px at 10 m
WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sh(cmd: list[str], env: dict, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def location_loaded(url: str) -> bool:
    try:
        entries = requests.post(url, json={"query": WORKSPACE}, timeout=10).json()["data"]["workspaceOrError"][
            "locationEntries"
        ]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False
    return any(
        e["name"] == "geo_assets" and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
        for e in entries
    )


def map_healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def stack_env(image: str) -> Iterator[tuple[dict, str]]:
    """The environment of a stack on free ports, its store on a SeaweedFS started here; its GraphQL URL."""
    from devtools.emulators import free_port
    from devtools.emulators.s3 import seaweedfs

    map_secret = secrets.token_hex(12)
    with (
        tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp,
        seaweedfs(  # the map's keys may only read and list, as deploy/README's MAP_AWS_* do
            Path(tmp) / "s3", [BUCKET], "bench-stack-key", secrets.token_hex(12), readers={MAP_KEY: map_secret}
        ) as s3,
    ):
        web = free_port()
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "COMPOSE_PROJECT_NAME": f"bench-stack-{uuid.uuid4().hex[:8]}",
            "GEO_ASSETS_IMAGE": image,
            "GEO_ASSETS_STORAGE_ROOT": f"s3://{BUCKET}/stack",
            "GEO_ASSETS_LOG_BUCKET": BUCKET,
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_REGION": s3.region,
            "MAP_AWS_ACCESS_KEY_ID": MAP_KEY,
            "MAP_AWS_SECRET_ACCESS_KEY": map_secret,
            "GEO_ASSETS_MAP_PORT": str(free_port()),
            "DAGSTER_PG_PASSWORD": secrets.token_hex(8),
            "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
            "DAGSTER_PG_PORT": str(free_port()),
            "GEO_ASSETS_GRPC_PORT": str(free_port()),
            "GEO_ASSETS_WEBSERVER_PORT": str(web),
            "GEO_ASSETS_READ_ONLY_PORT": str(free_port()),
        }
        for name in ("GEO_ASSETS_PROFILE", "DAGSTER_HOME"):
            env.pop(name, None)
        try:
            yield env, f"http://127.0.0.1:{web}/graphql"
        finally:
            subprocess.run([*COMPOSE, "down", "-v"], cwd=REPO, env=env, capture_output=True, timeout=300)


def start(env: dict, url: str, timeout: float = 600) -> float:
    """Seconds from `up -d` to the webserver serving the loaded code location and the map answering."""
    started = time.perf_counter()
    sh([*COMPOSE, "up", "-d"], env)
    while not (location_loaded(url) and map_healthy(int(env["GEO_ASSETS_MAP_PORT"]))):
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"the stack did not serve the code location within {timeout:.0f} s")
        time.sleep(0.2)
    return time.perf_counter() - started


def measure(image: str, starts: int, repeats: int) -> dict:
    from geo_assets.cli.graphql import DagsterClient

    start_times, rows = [], []
    with stack_env(image) as (env, url):
        sh([*COMPOSE, "build", "postgres"], env)  # built (or found in the cache) before any start is timed
        for i in range(starts):
            if i:
                sh([*COMPOSE, "down", "-v"], env, timeout=300)
            start_times.append(start(env, url))
            log(f"start {i + 1}/{starts}: {start_times[-1]:.1f} s")
        sh(
            [
                *COMPOSE,
                "exec",
                "-T",
                "daemon",
                "geo-assets",
                "region",
                "add",
                REGION[0],
                "--bbox",
                *REGION[1:],
                "--crs",
                "EPSG:32631",
            ],
            env,
        )
        client, day, run_ids = DagsterClient(url), datetime.date(2024, 1, 1), []
        try:
            for i in range(repeats + 1):  # the first launch warms the code server and is not counted
                sent = time.time()
                run_ids.append(
                    client.launch_run(["imagery_tiles"], f"{day + datetime.timedelta(days=i)}|{REGION[0]}", {}, {})
                )
                stamps = {"sent": sent, **_stamps(client, run_ids[-1], timeout=600)}
                row = {"run_id": run_ids[-1], "total": stamps["STEP_START"] - sent}
                row.update({name: stamps[end] - stamps[begin or "sent"] for name, begin, end in PHASES})
                if i:
                    rows.append(row)
                    log(f"launch {i}/{repeats}: {row['total']:.2f} s to STEP_START")
        finally:
            for run_id in run_ids:  # the run containers the launcher left behind
                subprocess.run(
                    f"docker ps -aq --filter label=dagster/run_id={run_id} | xargs -r docker rm -f",
                    shell=True,
                    capture_output=True,
                )
    return {"starts": start_times, "rows": rows}


def render(info: dict, result: dict, image: str) -> str:
    rows, med = result["rows"], lambda k: statistics.median(r[k] for r in result["rows"])
    total = med("total")
    phases = "\n".join(f"| {n} | {med(n):.2f} | {100 * med(n) / total:.0f} % |" for n, _, _ in PHASES)
    return f"""## stack: the deployment on one host

What is measured: `deploy/compose/docker-compose.yml` with the image `{image}` (PostgreSQL, code server,
webserver, read-only webserver, daemon, map server on read-only keys; runs as containers of the image through `DockerRunLauncher`),
its store on a local S3 API server. Start: `docker-compose up -d` to the webserver serving the loaded code
location and the map answering, {len(result["starts"])} times on a new database volume. Launch: `imagery_tiles` of a one-tile
region over GraphQL to `STEP_START`, {len(rows)} launches after one warm-up. Command:
`.venv/bin/python -m bench.stack --starts {len(result["starts"])} --repeats {len(rows)}`.
Machine: {info["nproc"]} cores ({info["cpu_model"]}), {info["platform"]}, Python {info["python"]},
dagster {info["dagster"]}; {info["date"]}; 1-min load average {info["loadavg_1min_at_start"]} at the start.

| | median (s) | share |
| --- | --- | --- |
| **stack start** (up to the code location loaded and the map answering) | **{statistics.median(result["starts"]):.1f}** | |
| **launch to STEP_START** | **{total:.2f}** | |
{phases}

Starts: {", ".join(f"{s:.1f}" for s in result["starts"])} s. Launches: {", ".join(f"{r['total']:.2f}" for r in rows)} s.
"run process" holds the run container's creation and start and the code location's load inside it."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stack", description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=3, help="stack starts timed (default 3)")
    ap.add_argument("--repeats", type=int, default=5, help="launches timed (default 5)")
    ap.add_argument("--quick", action="store_true", help="1 start and 2 launches, to check that the benchmark works")
    args = ap.parse_args(argv)
    starts, repeats = (1, 2) if args.quick else (args.starts, args.repeats)
    if not (1 <= starts <= 20 and 1 <= repeats <= 100):
        ap.error("--starts must be from 1 to 20 and --repeats from 1 to 100")
    from devtools import containers

    image = os.environ.get("GEO_ASSETS_IMAGE") or containers.app_image()
    containers.debian_image()  # the PostgreSQL image's base
    info = machine_info()
    result = measure(image, starts, repeats)
    publish("stack", MEASURES, RESULTS, {"machine": info, "image": image, **result}, render(info, result, image))
    return 0


if __name__ == "__main__":
    sys.exit(main())
